# escape: type() to create a class | source: three-argument type() escapes
@export
def attack():
    return type('X', (), {})
