# escape: str.format attribute access | source: Armin Ronacher, 'Be Careful with Python's New-Style String Format'
@export
def attack():
    return '{0.__class__.__mro__}'.format(1)
