# escape: eval | source: classic
@export
def attack():
    return eval('1+1')
