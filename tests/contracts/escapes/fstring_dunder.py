# escape: f-string evaluating a dunder attribute | source: f-string sandbox bypass notes
@export
def attack():
    return f'{ctx.__class__}'
