# escape: float('inf') | source: non-determinism
@export
def attack():
    return float('inf')
