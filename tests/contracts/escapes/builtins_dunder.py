# escape: __builtins__ lookup | source: classic eval sandbox escapes
@export
def attack():
    return __builtins__
