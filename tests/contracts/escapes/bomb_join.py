# escape: str.join of a huge list | source: resource exhaustion
@export
def attack():
    s = 'x' * 60000
    return '-'.join([s] * 60000)
