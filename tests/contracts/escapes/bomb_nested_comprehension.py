# escape: nested comprehensions multiplying | source: resource exhaustion
@export
def attack():
    return [[j for j in range(10 ** 4)] for i in range(10 ** 4)]
