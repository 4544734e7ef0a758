# escape: failing repeatedly inside a loop | source: exceptions thrown in loops
@export
def attack():
    n = 0
    for i in range(10 ** 9):
        n = n + 1
    assert False, 'never'
