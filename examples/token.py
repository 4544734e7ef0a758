"""A token: the first contract of docs/contracts.md.

Deploy it with `qilian contract deploy examples/token.py --init int:1000000`: init() credits the deployer (the
admin key that signs the deployment) with the whole supply."""

balances = Hash(default=0)          # persistent map: address -> balance
supply = Variable(default=0)        # persistent single value


@export
def init(amount: int):
    assert amount > 0, "the supply must be positive"
    balances[ctx.sender] = amount
    supply.set(amount)


@export
def transfer(to: str, amount: int):
    assert amount > 0, "amount must be positive"
    b = balances[ctx.sender]
    assert b >= amount, "insufficient balance"
    balances[ctx.sender] = b - amount
    balances[to] += amount
    emit("Transfer", {"from": ctx.sender, "to": to, "amount": amount})
    return balances[to]


@export
def balance_of(who: str):
    return balances[who]


@export
def total_supply():
    return supply.get()
