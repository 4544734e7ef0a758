# escape: deleting a name | source: namespace tampering
@export
def attack():
    del ctx
    return 1
