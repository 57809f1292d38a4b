// Hub IR (LLaMA family) → GGUF for llama.cpp's LLM_ARCH_LLAMA, following convert_hf_to_gguf.py's LlamaModel:
// tensor names token_embd / blk.N.{attn_norm,attn_q,attn_k,attn_v,attn_output,ffn_norm,ffn_gate,ffn_up,ffn_down} /
// output_norm / output, llama.* hyper-parameters, tokenizer.ggml.* (SentencePiece "llama" vocab).
// The IR keeps Hugging Face's half-split RoPE (rotate_half); llama.cpp's LLAMA arch rotates interleaved pairs, so
// q/k rows are permuted back exactly as convert_hf_to_gguf.py's permute(): per head, [2, hd/2] → [hd/2, 2].
// The IR's fused qkv_proj and gate_up_proj are split back into their rows. Not supported: attention/MLP biases,
// partial rotary dims, rope scaling other than linear.
using System.Text.Json.Nodes;
using Hub.IR;

namespace Hub.Converters.Formats;

/// <summary>What a GGUF export did.</summary>
/// <param name="Path">The file written.</param>
/// <param name="Type">Requested type of the 2-D weights.</param>
/// <param name="Tensors">Tensors written.</param>
/// <param name="Bytes">File size.</param>
/// <param name="CopiedExact">Tensors whose quantized blocks were copied from the IR without requantizing.</param>
/// <param name="Fallbacks">Tensors written in another type than requested, with the reason.</param>
public sealed record GgufExportResult(string Path, GgmlType Type, int Tensors, long Bytes, int CopiedExact, IReadOnlyList<string> Fallbacks);

/// <summary>Writes a LLaMA-family Hub IR model as a llama.cpp GGUF file (F32, F16, BF16, Q8_0 or Q4_0 weights).</summary>
public static class GgufLlamaExporter
{
    /// <summary>Parses a user-facing type name (f32, f16, bf16, q8_0, q4_0).</summary>
    public static GgmlType ParseType(string s) => s.ToLowerInvariant() switch
    {
        "f32" or "fp32" => GgmlType.F32,
        "f16" or "fp16" => GgmlType.F16,
        "bf16" or "bfloat16" => GgmlType.BF16,
        "q8_0" or "q8" or "int8" => GgmlType.Q8_0,
        "q4_0" or "q4" or "int4" => GgmlType.Q4_0,
        _ => throw new ArgumentException($"--gguf-type '{s}' is not one of f32, f16, bf16, q8_0, q4_0"),
    };

    /// <summary>
    /// Writes <paramref name="ir"/> to <paramref name="path"/> with 2-D weights in <paramref name="type"/> (norms stay F32;
    /// a matrix whose rows are not a multiple of 32 falls back to F16 for Q types). The vocabulary is read beside the IR
    /// unless given.
    /// </summary>
    public static GgufExportResult Export(IrModel ir, string path, GgmlType type, GgufVocab? vocab = null, string? name = null)
    {
        var g = ir.Graph;
        if (g.ModelType is not ("llama" or "aquila"))
            throw new UnsupportedModelException($"{ir.Directory}: GGUF export supports the LLaMA family (model_type llama/aquila), not '{g.ModelType}'");
        var rope = Node(ir, "model.layers.0.self_attn.rope_q", Ops.Rope);
        var att = Node(ir, "model.layers.0.self_attn.attention", Ops.Attention);
        var norm = Node(ir, "model.layers.0.input_layernorm", Ops.RMSNorm);
        int heads = (int)att.GetInt("heads"), kvHeads = (int)att.GetInt("kv_heads"), hd = (int)att.GetInt("head_dim");
        if (rope.GetInt("rotary_dims", hd) != hd) throw new UnsupportedModelException($"{ir.Directory}: partial rotary dims cannot be written to GGUF's llama arch");
        if (rope.GetString("style", "half") != "half") throw new UnsupportedModelException($"{ir.Directory}: IR rope style '{rope.GetString("style")}' is unexpected for LLaMA (half)");
        int layers = g.Nodes.Count(n => n.Op == Ops.Attention);
        var embed = ir.WeightInfo("model.embed_tokens.weight");
        int vocabSize = (int)embed.Shape[0], d = LogicalCols(embed);
        int ffn = LogicalCols(ir.WeightInfo("model.layers.0.mlp.down_proj.weight"));
        if (g.Weights.Any(w => w.Name.EndsWith(".bias", StringComparison.Ordinal)))
            throw new UnsupportedModelException($"{ir.Directory}: attention/MLP biases are not written to GGUF by Hub");
        int ctx = g.Metadata["max_position_embeddings"] is JsonNode mp ? (int)mp : 2048;
        vocab ??= GgufVocab.Load(ir.Directory, vocabSize);
        vocab = vocab.PaddedTo(vocabSize);
        if (vocab.Tokens.Length != vocabSize)
            throw new HubException($"{ir.Directory}: the tokenizer has {vocab.Tokens.Length} pieces but the embedding has {vocabSize} rows");

        var w = new GgufWriter();
        w.Add("general.architecture", "llama");
        w.Add("general.name", name ?? (g.Metadata["source"] is JsonNode s ? (string)s! : Path.GetFileName(Path.TrimEndingDirectorySeparator(ir.Directory))));
        w.Add("general.file_type", type switch { GgmlType.F32 => 0u, GgmlType.F16 => 1u, GgmlType.Q4_0 => 2u, GgmlType.BF16 => 32u, _ => 7u });
        if (type is GgmlType.Q4_0 or GgmlType.Q8_0) w.Add("general.quantization_version", 2u);
        w.Add("llama.context_length", (uint)ctx);
        w.Add("llama.embedding_length", (uint)d);
        w.Add("llama.block_count", (uint)layers);
        w.Add("llama.feed_forward_length", (uint)ffn);
        w.Add("llama.attention.head_count", (uint)heads);
        w.Add("llama.attention.head_count_kv", (uint)kvHeads);
        w.Add("llama.rope.dimension_count", (uint)hd);
        w.Add("llama.rope.freq_base", rope.GetFloat("theta", 10000f));
        if (rope.Attributes["scaling"] is JsonObject sc)
        {
            var st = (string?)sc["type"];
            if (st != "linear") throw new UnsupportedModelException($"{ir.Directory}: rope scaling '{st}' is not written to GGUF by Hub (linear only)");
            w.Add("llama.rope.scaling.type", "linear");
            var factor = sc["factor"] ?? throw new IrFormatException(Path.Combine(ir.Directory, IrFormat.JsonFile), "linear rope scaling lacks its 'factor'");
            w.Add("llama.rope.scaling.factor", (float)factor.GetValue<double>());
        }
        w.Add("llama.attention.layer_norm_rms_epsilon", norm.GetFloat("eps"));
        w.Add("llama.vocab_size", (uint)vocabSize);
        w.Add("tokenizer.ggml.model", "llama");
        w.Add("tokenizer.ggml.tokens", vocab.Tokens);
        w.Add("tokenizer.ggml.scores", vocab.Scores);
        w.Add("tokenizer.ggml.token_type", vocab.Types);
        w.Add("tokenizer.ggml.bos_token_id", (uint)vocab.Bos);
        w.Add("tokenizer.ggml.eos_token_id", (uint)vocab.Eos);
        w.Add("tokenizer.ggml.unknown_token_id", (uint)vocab.Unk);
        w.Add("tokenizer.ggml.add_bos_token", true);
        w.Add("tokenizer.ggml.add_eos_token", false);

        var fallbacks = new List<string>();
        int exact = 0;
        void Matrix(string gguf, string irName, int rowStart, int rows, int permuteHeads = 0)
        {
            var src = new IrMatrix(ir, ir.WeightInfo(irName));
            var t = type;
            if (t is GgmlType.Q4_0 or GgmlType.Q8_0 && src.Cols % 32 != 0)
            {
                t = GgmlType.F16;
                fallbacks.Add($"{gguf}: {src.Cols} columns are not a multiple of 32 → F16");
            }
            var map = RowMap(rowStart, rows, permuteHeads);
            if (src.CanCopy(t)) exact++;
            w.AddTensor(gguf, t, [src.Cols, rows], s => src.WriteRows(s, map, t));
        }
        void Vector(string gguf, string irName)
        {
            var info = ir.WeightInfo(irName);
            w.AddTensor(gguf, GgmlType.F32, [info.Shape.ElementCount], s => new IrMatrix(ir, info, asVector: true).WriteRows(s, [0], GgmlType.F32));
        }

        Matrix("token_embd.weight", "model.embed_tokens.weight", 0, vocabSize);
        int qDim = heads * hd, kvDim = kvHeads * hd;
        for (int i = 0; i < layers; i++)
        {
            string p = $"model.layers.{i}", b = $"blk.{i}";
            Vector($"{b}.attn_norm.weight", $"{p}.input_layernorm.weight");
            Matrix($"{b}.attn_q.weight", $"{p}.self_attn.qkv_proj.weight", 0, qDim, heads);
            Matrix($"{b}.attn_k.weight", $"{p}.self_attn.qkv_proj.weight", qDim, kvDim, kvHeads);
            Matrix($"{b}.attn_v.weight", $"{p}.self_attn.qkv_proj.weight", qDim + kvDim, kvDim);
            Matrix($"{b}.attn_output.weight", $"{p}.self_attn.o_proj.weight", 0, d);
            Vector($"{b}.ffn_norm.weight", $"{p}.post_attention_layernorm.weight");
            Matrix($"{b}.ffn_gate.weight", $"{p}.mlp.gate_up_proj.weight", 0, ffn);
            Matrix($"{b}.ffn_up.weight", $"{p}.mlp.gate_up_proj.weight", ffn, ffn);
            Matrix($"{b}.ffn_down.weight", $"{p}.mlp.down_proj.weight", 0, d);
        }
        Vector("output_norm.weight", "model.norm.weight");
        // A tied head has no output tensor: llama.cpp then reads token_embd for the logits.
        var logits = g.Nodes.FirstOrDefault(n => n.Name == "logits" && n.Op == Ops.Linear && n.Inputs.Count > 1)
                     ?? throw new UnsupportedModelException($"{ir.Directory}: the graph has no Linear node 'logits' (the LM head); only LLaMA-family causal LM exports can be written to GGUF");
        if (logits.Inputs[1] != "model.embed_tokens.weight") Matrix("output.weight", logits.Inputs[1], 0, vocabSize);

        w.Write(path);
        return new GgufExportResult(Path.GetFullPath(path), type, w.TensorCount, new FileInfo(path).Length, exact, fallbacks);
    }

    /// <summary>Columns (K) of a 2-D weight: int4 data is stored as [N, K/2] bytes (docs/quantization.md).</summary>
    private static int LogicalCols(WeightInfo w) =>
        w.Shape.Rank != 2
            ? throw new UnsupportedModelException($"weight '{w.Name}' has shape {w.Shape}; a LLaMA matrix for GGUF must be 2-D")
            : checked((int)(w.Quant is { } q && q.Scheme.Equals("int4", StringComparison.OrdinalIgnoreCase) ? w.Shape[1] * 2 : w.Shape[1]));

    private static Node Node(IrModel ir, string name, string op) =>
        ir.Graph.Nodes.FirstOrDefault(n => n.Name == name && n.Op == op)
        ?? throw new UnsupportedModelException($"{ir.Directory}: node '{name}' ({op}) not found; is this a LLaMA export?");

    /// <summary>
    /// Source row of each written row. With <paramref name="heads"/> &gt; 0, convert_hf_to_gguf.py's permute: within each
    /// head, written row 2i + j comes from HF row j·hd/2 + i (HF's half-split back to interleaved pairs).
    /// </summary>
    public static int[] RowMap(int start, int rows, int heads = 0)
    {
        var map = new int[rows];
        if (heads == 0) { for (int r = 0; r < rows; r++) map[r] = start + r; return map; }
        int hd = rows / heads, half = hd / 2;
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < half; i++)
                for (int j = 0; j < 2; j++)
                    map[h * hd + 2 * i + j] = start + h * hd + j * half + i;
        return map;
    }

    /// <summary>Row access to one IR weight (plain f32/f16/bf16, or int8/int4 quantized per docs/quantization.md).</summary>
    private sealed unsafe class IrMatrix
    {
        private readonly WeightInfo _w;
        private readonly byte* _data;
        private readonly TensorView _scaleView;
        private float[]? _scales;
        private readonly byte[]? _zeros;
        private readonly int _group;
        private readonly string _scheme;

        public int Rows { get; }
        public int Cols { get; }

        public IrMatrix(IrModel ir, WeightInfo w, bool asVector = false)
        {
            _w = w;
            _data = (byte*)ir.GetWeight(w.Name).Pointer;
            if (asVector) { Rows = 1; Cols = checked((int)w.Shape.ElementCount); }
            else
            {
                if (w.Shape.Rank != 2) throw new IrFormatException(ir.Directory, $"weight '{w.Name}' has shape {w.Shape}; a matrix was expected");
                Rows = checked((int)w.Shape[0]); Cols = LogicalCols(w);
            }
            _scheme = "";
            if (w.Quant is { } q)
            {
                _scheme = q.Scheme.ToLowerInvariant();
                if (_scheme is not ("int8" or "int4"))
                    throw new UnsupportedModelException($"{ir.Directory}: weight '{w.Name}' uses quantization scheme '{q.Scheme}', unknown to the GGUF writer");
                _group = q.GroupSize == 0 ? Cols : q.GroupSize;
                _scaleView = ir.GetWeight(q.Scales);
                if (q.Zeros is { } z) _zeros = ir.GetWeight(z).Bytes.ToArray();
                if (_scaleView.Shape.ElementCount != (long)Rows * (Cols / _group))
                    throw new IrFormatException(ir.Directory, $"weight '{w.Name}': {_scaleView.Shape.ElementCount} scales do not match [{Rows}, {Cols}/{_group}]");
            }
        }

        /// <summary>Scales as f32, converted on first use: a block copy from F16 scales never needs them.</summary>
        private float[] Scales => _scales ??= _scaleView.ToFloat32();

        /// <summary>True when the IR blocks are already this ggml type's blocks (group 32, symmetric, same width).</summary>
        public bool CanCopy(GgmlType t) => _w.Quant is { Symmetric: true } && _group == 32 &&
            (t == GgmlType.Q8_0 && _scheme == "int8" || t == GgmlType.Q4_0 && _scheme == "int4");

        public void WriteRows(Stream s, int[] map, GgmlType t)
        {
            var row = new float[Cols];
            var outRow = new byte[t.RowBytes(Cols)];
            bool copy = CanCopy(t);
            foreach (int r in map)
            {
                if (copy) CopyBlocks(r, t, outRow);
                else { Row(r, row); GgufQuant.Encode(t, row, outRow); }
                s.Write(outRow);
            }
        }

        /// <summary>
        /// One row of ggml blocks straight from the IR's: the quantized bytes as they are, and the scale's half bits
        /// copied when the IR stores F16 scales (current exports) or rounded from F32 ones (exports before session 4,
        /// whose scales are f16 values too, so both give the same bytes).
        /// </summary>
        private void CopyBlocks(int r, GgmlType t, Span<byte> dst)
        {
            int nb = Cols / 32, bb = t.BlockBytes(), qb = bb - 2;
            byte* src = _data + (long)r * nb * qb;
            byte* halfScales = _scaleView.DType == DType.F16 ? (byte*)_scaleView.Pointer + (long)r * nb * 2 : null;
            for (int b = 0; b < nb; b++)
            {
                if (halfScales is not null) new ReadOnlySpan<byte>(halfScales + 2L * b, 2).CopyTo(dst.Slice(b * bb, 2));
                else System.Buffers.Binary.BinaryPrimitives.WriteHalfLittleEndian(dst.Slice(b * bb), (Half)Scales[(long)r * nb + b]);
                new ReadOnlySpan<byte>(src + (long)b * qb, qb).CopyTo(dst.Slice(b * bb + 2, qb));
            }
        }

        private void Row(int r, Span<float> dst)
        {
            if (_w.Quant is null)
            {
                int es = _w.DType.SizeOf();
                DTypeConvert.ToFloat32(new ReadOnlySpan<byte>(_data + (long)r * Cols * es, Cols * es), _w.DType, dst);
                return;
            }
            int groups = Cols / _group;
            var scales = Scales;
            if (_scheme == "int8")
            {
                byte* q = _data + (long)r * Cols;
                for (int k = 0; k < Cols; k++)
                {
                    long gi = (long)r * groups + k / _group;
                    dst[k] = _zeros is null ? (sbyte)q[k] * scales[gi] : (q[k] - _zeros[gi]) * scales[gi];
                }
            }
            else
            {
                byte* q = _data + (long)r * (Cols / 2);
                for (int k = 0; k < Cols; k++)
                {
                    int run = k / 32, j = k % 32;
                    byte packed = q[run * 16 + (j & 15)];
                    int v = j < 16 ? packed & 0xF : packed >> 4;
                    long gi = (long)r * groups + k / _group;
                    dst[k] = (v - (_zeros is null ? 8 : _zeros[gi])) * scales[gi];
                }
            }
        }
    }
}
