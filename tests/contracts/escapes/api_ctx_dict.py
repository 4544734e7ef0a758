# escape: ctx.__dict__ to rewrite the sender | source: object tampering
@export
def attack():
    ctx.__dict__['sender'] = 'x'
    return 1
