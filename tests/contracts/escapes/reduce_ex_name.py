# escape: __reduce_ex__ attribute lookup | source: pickle protocol abuse
@export
def attack():
    return (1).__reduce_ex__(2)
