# escape: isinstance() with a non-whitelisted type | source: type probing
@export
def attack():
    return isinstance(ctx, ctx)
