# escape: __getattribute__ lookup on an object | source: attribute-hook bypasses
@export
def attack():
    return ctx.__getattribute__('sender')
