
E_value = 3
ctx[E] = E_value
gelu = torch.nn.GELU()
sig = torch.nn.Sigmoid()
sm = torch.nn.Softmax(dim=-1)
silu = torch.nn.SiLU()
eps = 1e-5
a = -x ** 2 + y @ z - 3 // 2 % 5 / 2.
ok = True if x > 0.5 else False
none = None
b = x[0][1] + x[:, :, 0] + x[..., ::2] + x[1:3:2] + x[None, :] + x[:-1]
w = input_data['W'] @ input_data[f"{E}_value"]
v, i = torch.topk(x, 2, dim=-1)
y = torch.einsum('bij,bjk->bik', p, q)
z = torch.zeros_like(x, dtype=torch.float32)
t = torch.tensor([1.0, 2.0]) + torch.exp(x) + torch.sqrt(x) + torch.max(x, y)
r = torch.arange(0, D_value, 2, dtype=torch.float) / D_value
s = torch.stack([p, q], dim=0) + torch.cat([p, q], 1) + torch.bmm(p, q)
u = torch.softmax(x, dim=-1) + torch.sum(x, 0) + torch.cumprod(x, dim=0) + torch.ones(3)
ln = torch.ops.aten.native_layer_norm.default(x, [D_value], None, None, 1e-5)[0]
m = x.unsqueeze(0).squeeze(-1).movedim(0, 1).sum(dim=1).mean(-1).var(unbiased=False)
c = x.cos() * x.sin() + x.chunk(2, dim=-1)[0] + x.flatten().expand(3, 4).expand_as(y)
f = x.float().pow(2).repeat(2, 1).view(-1, 4).size(0) + x.scatter(0, i, y).T
x.scatter_(1, i, 1.0)
lst = [torch.zeros(D_value) for i in range(E_value)]
pairs = [p * q for p, q in zip(ps, qs)]
eq = x == y
ne = not x != y
return [gelu(state[0]) + sig(input[1]), silu(x)]
