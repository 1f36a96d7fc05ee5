"""What a hypothesis file declares about itself, and how the report reads it: by importing the file.

    from attnclaims.declaration import Hypothesis

    HYPOTHESIS = Hypothesis(
        "Does the model have a previous-token head?",  # the question, the report's first line on it
        figures=("previous_token_{model}.png",),  # the images its study writes into the results folder
        arms=ARMS,  # what its study does to the model (attnclaims.arms), where it has arms
    )

One object at module level, named HYPOTHESIS. `attnclaims report` imports hypotheses/test_<name>.py
(with the project's folder and the hypotheses folder on sys.path, as pytest has them) and reads it:
nothing is matched by file name or parsed out of the source. Importing a hypothesis file must not
load a model (the fixtures do that), so the report renders in seconds. A file without a declaration,
or with something else under that name, is an error naming the file and what to add.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from types import ModuleType

from attnclaims.arms import Arm

NAME = "HYPOTHESIS"  # the module-level name a hypothesis file declares itself under


@dataclass(frozen=True)
class Hypothesis:
    """A hypothesis file's declaration (the module docstring): `question`, what it asks, in a sentence
    or two; `figures`, the names of the images its study writes into the results folder, "{model}"
    standing for any text (a model's name), which the report shows where they exist; `arms`, the arms
    its study runs (attnclaims.arms.Arm), which the report lists by name."""

    question: str
    figures: tuple[str, ...] = ()
    arms: tuple[Arm, ...] = ()

    def __post_init__(self):
        if not isinstance(self.question, str) or not self.question.strip():
            raise ValueError("Hypothesis(question=...): say what the hypothesis asks, as text")
        object.__setattr__(self, "question", " ".join(self.question.split()))
        figures = (self.figures,) if isinstance(self.figures, str) else tuple(self.figures)
        if not all(isinstance(name, str) and name and "/" not in name for name in figures):
            raise ValueError(
                f"Hypothesis(figures=...) takes file names in the results folder ('x_{{model}}.png'), "
                f"got {figures!r}"
            )
        object.__setattr__(self, "figures", figures)
        arms = tuple(self.arms)
        if not all(isinstance(arm, Arm) for arm in arms):
            raise TypeError(f"Hypothesis(arms=...) takes attnclaims.arms.Arm objects, got {arms!r}")
        object.__setattr__(self, "arms", arms)

    def shows(self, file_name: str) -> bool:
        """Whether `file_name` is one of the declared figures ("{model}" matching any text)."""
        return any(fnmatchcase(file_name, pattern.replace("{model}", "*")) for pattern in self.figures)


@dataclass(frozen=True)
class Declared:
    """A hypothesis file as the report reads it: its declaration, and its module docstring (the protocol)."""

    hypothesis: Hypothesis
    doc: str


def declared(path: Path) -> Declared:
    """The declaration of hypothesis file `path`, read by importing it (module docstring)."""
    path = Path(path)
    module = load(path)
    hypothesis = getattr(module, NAME, None)
    if hypothesis is None:
        raise ValueError(
            f"{path} declares no {NAME}: add `{NAME} = Hypothesis(question, figures=(...), arms=(...))` "
            "(attnclaims.declaration) at module level"
        )
    if not isinstance(hypothesis, Hypothesis):
        raise TypeError(
            f"{path}: {NAME} is a {type(hypothesis).__name__}, not an attnclaims.declaration.Hypothesis"
        )
    return Declared(hypothesis, module.__doc__ or "")


def load(path: Path) -> ModuleType:
    """Hypothesis file `path` imported, as pytest imports it: its folder and the project's (its parent)
    on sys.path meanwhile, so `from lib... import` and a sibling hypothesis's import work. Each call
    imports it afresh, under a name of its own."""
    path = Path(path).resolve()
    name = f"attnclaims_hypothesis_{path.stem}_{abs(hash(path)):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    added = [str(folder) for folder in (path.parent, path.parent.parent) if str(folder) not in sys.path]
    sys.path[:0] = added
    sys.modules[name] = module  # a dataclass's annotations are resolved through it
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(name, None)
        raise ImportError(
            f"{path}: importing the hypothesis for its declaration failed: {error!r}"
        ) from error
    finally:
        for folder in added:
            sys.path.remove(folder)
    return module
