# escape: unbounded recursion | source: resource exhaustion
@export
def attack():
    return attack()
