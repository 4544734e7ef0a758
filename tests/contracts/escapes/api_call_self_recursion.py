# escape: recursive cross-contract self-calls | source: re-entrancy depth
@export
def attack():
    return call(ctx.this, 'attack')
