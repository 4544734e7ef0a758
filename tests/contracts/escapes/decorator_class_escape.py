# escape: decorator returning a class | source: decorator-based pyjail escapes
def deco(f):
    return f
@export
@deco
def attack():
    return 1
