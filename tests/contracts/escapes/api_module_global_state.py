# escape: module-level mutable global | source: non-persistent state confusion
cache = []
@export
def attack():
    cache.append(1)
    return cache
