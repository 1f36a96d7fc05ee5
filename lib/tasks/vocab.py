"""The special tokens every toy task's vocabulary starts with: token id = index in the vocabulary."""

BOS = "<bos>"
PAD = "<pad>"
SPECIAL = [BOS, PAD]  # ids 0 and 1
N_SPECIAL = len(SPECIAL)
