# escape: globals() to reach guard functions | source: namespace escapes
@export
def attack():
    return globals()['_q_call']
