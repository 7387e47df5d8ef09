// The GPT-2 block matrices as Muon / Newton-Muon parameters, handled as the spec's table says
// (../../shared/spec/newton-muon.md): attn.c_attn orthogonalised per q / k / v row block,
// mlp.c_proj with a block-diagonal (4 blocks of C x C) input statistic, the others whole. The
// embedding (tied head) is not among them: it belongs to AdamW.
import type { MatrixParam } from '../optim/matrix_optimizer';
import type { GPT2 } from './model';

export function gpt2MatrixParams(model: GPT2): MatrixParam[] {
  const params = model.stateDict();
  const grads = model.grads();
  const m = (name: string, extra: Partial<MatrixParam> = {}): MatrixParam => ({ name, param: params[name], grad: grads[name], ...extra });
  const matrices: MatrixParam[] = [];
  for (let l = 0; l < model.config.nLayer; l++) {
    const p = `transformer.h.${l}`;
    matrices.push(m(`${p}.attn.c_attn.weight`, { rowBlocks: 3 }));
    matrices.push(m(`${p}.attn.c_proj.weight`));
    matrices.push(m(`${p}.mlp.c_fc.weight`));
    matrices.push(m(`${p}.mlp.c_proj.weight`, { inputBlocks: 4 }));
  }
  return matrices;
}
