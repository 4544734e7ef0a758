# escape: setattr on the API object | source: object tampering
@export
def attack():
    setattr(ctx, 'sender', 'me')
    return 1
