# escape: assign to ctx.sender | source: object tampering
@export
def attack():
    ctx.sender = 'someone-else'
    return ctx.sender
