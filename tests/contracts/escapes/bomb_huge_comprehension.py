# escape: huge list comprehension | source: resource exhaustion
@export
def attack():
    return [i for i in range(10 ** 9)]
