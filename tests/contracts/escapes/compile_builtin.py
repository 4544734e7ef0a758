# escape: compile | source: classic
@export
def attack():
    return compile('1', 'x', 'eval')
