# escape: NFKC-normalised fullwidth underscores | source: Unicode identifier normalisation (PEP 3131) pyjail tricks
@export
def attack():
    return ().＿＿class＿＿
