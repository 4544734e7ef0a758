# escape: mathematical italic identifiers normalising to eval | source: Unicode normalisation pyjail tricks
@export
def attack():
    return 𝘦𝘷𝘢𝘭('1')
