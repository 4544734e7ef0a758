# escape: exec | source: classic
@export
def attack():
    exec('x = 1')
    return 1
