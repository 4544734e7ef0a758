# escape: breakpoint() | source: pdb-based escapes
@export
def attack():
    breakpoint()
    return 1
