# escape: forging another contract's storage namespace | source: cross-contract storage access
data = Hash()
@export
def attack():
    data.ns = 'c:evidence'
    return 1
