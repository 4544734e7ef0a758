# escape: getattr with a computed name | source: RestrictedPython getattr bypass
@export
def attack():
    return getattr(ctx, '__cl' + 'ass__')
