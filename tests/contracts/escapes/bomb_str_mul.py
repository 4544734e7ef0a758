# escape: 'a'*10**10 | source: resource exhaustion
@export
def attack():
    return 'a' * 10 ** 10
