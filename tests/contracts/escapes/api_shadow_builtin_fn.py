# escape: defining a function named like a builtin | source: API tampering
def len(x):
    return 0
@export
def attack():
    return len([1])
