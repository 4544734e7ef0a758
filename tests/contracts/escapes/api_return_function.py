# escape: returning a function object to the node | source: object leaks
@export
def attack():
    return attack
