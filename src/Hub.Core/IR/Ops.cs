namespace Hub.IR;

/// <summary>
/// The IR operator catalog: the one place where each op's semantics is written down.
/// </summary>
/// <remarks>
/// Conventions for every op:
/// <list type="bullet">
/// <item>Activations are float32, row-major. "[B, T, D]" = batch, sequence, features. Weights may be F32/F16/BF16
/// (or quantized, see <see cref="Quantization"/>); the runtime computes in float32 from upcast weights.</item>
/// <item>Inputs are named values: graph inputs, outputs of earlier nodes, or weight names. An empty string
/// marks an absent optional input.</item>
/// <item>Attributes are JSON values; names are snake_case. Defaults are given below; an absent attribute takes its default.</item>
/// <item>Integer inputs (token ids, positions) are I32.</item>
/// <item>Data-movement ops (Slice, KeepLast, Split, Concat, GatherRows) accept I32 as well as F32 values and keep the
/// dtype; every other op takes and produces F32 (TopK's indices are I32).</item>
/// <item>Graph inputs keep their last <c>SetInput</c> value across <c>Infer</c> calls; an input never set is an error.</item>
/// </list>
/// </remarks>
public static class Ops
{
    /// <summary><c>Embedding(ids [B,T] I32, table [V,D]) → [B,T,D]</c>: row lookup. An id outside [0,V) is a
    /// <see cref="ModelInputException"/> naming the id and V.</summary>
    public const string Embedding = "Embedding";

    /// <summary><c>Linear(x [...,K], weight [N,K], bias? [N]) → [...,N]</c>: y = x·Wᵀ + b (PyTorch nn.Linear layout).
    /// Weight may be F32/F16/BF16 or quantized. Attribute <c>transpose_b</c> is not supported: converters emit [N,K].</summary>
    public const string Linear = "Linear";

    /// <summary><c>MatMul(a [...,M,K], b [...,K,N]) → [...,M,N]</c> for two activations (batched over leading dims, equal).</summary>
    public const string MatMul = "MatMul";

    /// <summary><c>LayerNorm(x [...,D], gamma [D], beta? [D]) → [...,D]</c>: (x−mean)/sqrt(var+eps)·γ+β, biased variance
    /// over the last axis. Attr <c>eps</c> (float, 1e-5).</summary>
    public const string LayerNorm = "LayerNorm";

    /// <summary><c>RMSNorm(x [...,D], gamma [D]) → [...,D]</c>: x/sqrt(mean(x²)+eps)·γ, computed in float32.
    /// Attr <c>eps</c> (float, 1e-6).</summary>
    public const string RMSNorm = "RMSNorm";

    /// <summary><c>Add(a, b) → shape of a</c>: elementwise; b's shape equals a's or is a suffix of it (broadcast over
    /// the leading dims, e.g. a bias [D] or positions [T,D] onto [B,T,D]).</summary>
    public const string Add = "Add";

    /// <summary><c>Mul(a, b) → shape of a</c>: elementwise with the same broadcasting as <see cref="Add"/>.</summary>
    public const string Mul = "Mul";

    /// <summary><c>Scale(x) → x·alpha + beta</c> (elementwise, any shape). Attrs <c>alpha</c> (float, 1), <c>beta</c> (float, 0).</summary>
    public const string Scale = "Scale";

    /// <summary><c>Gelu(x)</c>. Attr <c>approximate</c>: "none" (exact erf: 0.5·x·(1+erf(x/√2))) or "tanh"
    /// (gelu_new: 0.5·x·(1+tanh(√(2/π)·(x+0.044715x³)))). Default "none".</summary>
    public const string Gelu = "Gelu";

    /// <summary><c>Silu(x) = x·sigmoid(x)</c>.</summary>
    public const string Silu = "Silu";

    /// <summary><c>Relu(x) = max(x, 0)</c>.</summary>
    public const string Relu = "Relu";

    /// <summary><c>Tanh(x)</c>.</summary>
    public const string Tanh = "Tanh";

    /// <summary><c>Sigmoid(x) = 1/(1+e^−x)</c>.</summary>
    public const string Sigmoid = "Sigmoid";

    /// <summary><c>SwiGlu(x [...,2F]) → [...,F]</c>: silu(x[..., :F]) · x[..., F:] (gate in the FIRST half).
    /// LLaMA's gate_proj/up_proj are fused by the converter into one Linear [2F, D] feeding this op.</summary>
    public const string SwiGlu = "SwiGlu";


    /// <summary>
    /// <c>Rope(x [B,T,H·hd], positions [B,T] I32) → same shape</c>: rotary position embedding applied per head.
    /// Attrs: <c>heads</c> (int, H), <c>head_dim</c> (int, hd), <c>rotary_dims</c> (int, default hd: only the first
    /// rotary_dims channels of each head rotate, the rest pass through), <c>style</c> ("half": pairs (i, i+r/2) as
    /// HF's rotate_half; "interleaved": pairs (2i, 2i+1) as Meta/llama2.c/ChatGLM2), <c>theta</c> (float, 10000),
    /// <c>scaling</c> (object or absent: <c>{"type": "linear", "factor": f}</c> divides positions by f;
    /// <c>{"type": "dynamic", "factor": f, "original_max_position_embeddings": n}</c> NTK-scales theta when the
    /// sequence exceeds n; <c>{"type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
    /// "original_max_position_embeddings"}</c> as transformers' _compute_llama3_parameters), <c>position_scale</c>
    /// (float, 1: positions are multiplied by it before use; ChatGLM2-32k's interpolation is 1/rope_ratio),
    /// <c>positions_offset</c> (int, 0: which row of a positions input [B, P, T] to use; ChatGLM v1's 2D RoPE applies two
    /// Rope ops, each over its half of the head via <c>channel_offset</c>).
    /// <c>channel_offset</c> (int, 0): the rotated block starts at this channel within each head.
    /// <c>freq_dtype</c> ("f32" default, or "f16"): with "f16" each frequency is rounded to float16 before the angles
    /// are computed (angles, cos and sin stay float32); ChatGLM-6B v1 stores inv_freq as half even in float32 runs.
    /// Frequency i (0 ≤ i &lt; r/2) is theta^(−2i/r) with r = rotary_dims; angle = position · freq; computed in float32.
    /// Order of position transforms: position · position_scale, then ÷ factor for linear scaling. Dynamic scaling takes
    /// the sequence length as (largest raw position in this call) + 1 and recomputes theta from it on every call (no
    /// memory of longer earlier calls). The scaling object's kind may be given as <c>type</c> or <c>rope_type</c>.
    /// </summary>
    public const string Rope = "Rope";

    /// <summary>
    /// <c>Attention(q [B,T,H·hd], k [B,T,KV·hd], v [B,T,KV·hd], mask? [B,S]) → [B,T,H·hd]</c>: scaled dot-product
    /// attention. Attrs: <c>heads</c> H, <c>kv_heads</c> KV (default H; query head h reads kv head h / (H/KV)),
    /// <c>head_dim</c> hd, <c>scale</c> (float, default 1/√hd), <c>causal</c> (bool, default true),
    /// <c>state_k</c>/<c>state_v</c> (state names; absent = no cache), <c>prefix_bidirectional</c> (bool, false: when
    /// true the mask input is instead [B] I32 holding a prefix length P per row, positions &lt; P see each other; ChatGLM v1,
    /// whose left-padded batches add the [B,S] mask as an optional fifth input).
    /// With a cache: k and v are written in place into the states at positions [past, past+T) (past = the request's
    /// current length), and the queries attend over all S = past+T keys; query t sits at absolute position past+t and,
    /// when causal, sees keys 0..past+t. States have shape [B, KV, capacity, hd]. The optional mask [B,S] (1 keep,
    /// 0 drop; float32) removes padded keys; a query row whose keys are all masked yields zeros.
    /// With <c>prefix_bidirectional</c> (which needs <c>causal</c>), the query at absolute position i sees key j when j ≤ i,
    /// or when both i &lt; P and j &lt; P. With <c>causal</c> false every key is visible (subject to the mask).
    /// Every stateful Attention node of a graph shares the request's past length and must append the same [B, T]; the
    /// past length advances once per successful Infer. B may differ from the cached rows only when the cache is empty.
    /// </summary>
    public const string Attention = "Attention";

    /// <summary><c>Softmax(x)</c> over attr <c>axis</c> (int, −1).</summary>
    public const string Softmax = "Softmax";

    /// <summary><c>TopK(x [...,N]) → (values [...,k], indices [...,k] I32)</c>, descending, ties → lowest index, NaN ranks
    /// above every number (as torch.topk).
    /// Attr <c>k</c> (int).</summary>
    public const string TopK = "TopK";

    /// <summary><c>Slice(x)</c> along attr <c>axis</c> from <c>start</c> to <c>end</c> (ints; negative counts from the
    /// end; end default = the dim; both are then clamped to [0, dim] as Python slices, so an empty result is possible).
    /// <c>Slice(axis=1, start=-1)</c> keeps the last position.</summary>
    public const string Slice = "Slice";

    /// <summary><c>KeepLast(x [B,T,...], n I32 [1]) → [B,T',...]</c>: the last T' = (n == 0 ? T : min(n, T)) positions (n &lt; 0 is a <see cref="ModelInputException"/>)
    /// along axis 1 (transformers' <c>logits_to_keep</c>). Causal LMs put it before the LM head, so generation runs the
    /// head on the last row only while <c>hub logits</c> asks for every position with n = 0.</summary>
    public const string KeepLast = "KeepLast";

    /// <summary><c>Split(x [...,Σsizes]) → one output per size</c> along the last axis. Attr <c>sizes</c> (int array).</summary>
    public const string Split = "Split";

    /// <summary><c>Concat(x1, x2, ...)</c> along attr <c>axis</c> (int, −1).</summary>
    public const string Concat = "Concat";

    /// <summary><c>Gather(x [B,T,D], index [B] I32) → [B,D]</c>: picks row index[b] of each batch
    /// (e.g. the last non-padding token for GPT-2 sequence classification). An index outside [0,T) is a
    /// <see cref="ModelInputException"/>.</summary>
    public const string GatherRows = "GatherRows";

    /// <summary><c>Gru</c>/<c>AuGru</c>/<c>BatchNorm</c>/<c>PRelu</c>/<c>Dice</c>: reserved for DIEN; defined when it lands.</summary>
    public const string Gru = "Gru";

    /// <summary>All ops the runtime must implement for IR version 1.</summary>
    public static readonly IReadOnlySet<string> All = new HashSet<string>
    {
        Embedding, Linear, MatMul, LayerNorm, RMSNorm, Add, Mul, Scale, Gelu, Silu, Relu, Tanh, Sigmoid, SwiGlu,
        Rope, Attention, Softmax, TopK, Slice, KeepLast, Split, Concat, GatherRows,
    };
}
