# escape: locals() | source: namespace escapes
@export
def attack():
    return locals()
