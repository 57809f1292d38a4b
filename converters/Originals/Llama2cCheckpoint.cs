using System.Buffers.Binary;
using Hub.Models;

namespace Hub.Converters;

/// <summary>
/// A llama2.c checkpoint (<c>run.c</c>'s legacy "v0" layout, or <c>export.py</c>'s float32 "version 1" with the
/// <c>ak42</c> magic) presented as a Hugging Face LLaMA checkpoint. Every tensor is a zero-copy view of the mapped
/// file; per-layer tensors are slices of llama2.c's stacked arrays. wq/wk keep llama2.c's interleaved-pair RoPE order
/// (<see cref="WeightLayout.InterleavedRope"/>).
/// </summary>
public static unsafe class Llama2cCheckpoint
{
    /// <summary><c>export.py</c>'s magic, "ak42" read as a little-endian uint32.</summary>
    public const uint Magic = 0x616b3432;

    /// <summary>The seven header fields, in file order.</summary>
    public sealed record Header(int Dim, int HiddenDim, int Layers, int Heads, int KvHeads, int VocabSize, int SeqLen, bool Shared, int Version)
    {
        /// <summary>Width of one head.</summary>
        public int HeadSize => Dim / Heads;
        /// <summary>Rows of wk/wv.</summary>
        public int KvDim => Dim / Heads * KvHeads;
    }

    /// <summary>Reads and sanity-checks the header of <paramref name="path"/> (no tensor data).</summary>
    public static Header ReadHeader(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        var b = new byte[37];
        int n = fs.ReadAtLeast(b, b.Length, throwOnEndOfStream: false);
        return ParseHeader(path, b.AsSpan(0, n), fs.Length);
    }

    /// <summary>True when <paramref name="path"/> looks like a llama2.c checkpoint (header sane, size matching).</summary>
    public static bool LooksLikeLlama2c(string path)
    {
        try { ReadHeader(path); return true; }
        catch (Exception e) when (e is CheckpointFormatException or IOException or UnauthorizedAccessException) { return false; }
    }

    private static Header ParseHeader(string path, ReadOnlySpan<byte> b, long fileLength)
    {
        if (b.Length < 28)
            throw new CheckpointFormatException(path, null, $"file is {fileLength} bytes, shorter than llama2.c's 28-byte header; it is truncated or not a llama2.c checkpoint");
        var raw = b.ToArray();
        int I(int i) => BinaryPrimitives.ReadInt32LittleEndian(raw.AsSpan(4 * i));
        Header h;
        if (BinaryPrimitives.ReadUInt32LittleEndian(b) == Magic)
        {
            int version = I(1);
            if (version != 1)
                throw new CheckpointFormatException(path, null, version == 2
                    ? "llama2.c export version 2 (int8 Q8_0 weights, for runq.c) is not supported; export version 1 (float32) or the legacy format instead"
                    : $"llama2.c export version {version} is unknown (this reader supports the legacy format and version 1)");
            if (b.Length < 37) throw new CheckpointFormatException(path, null, "llama2.c version 1 header is truncated");
            h = new Header(I(2), I(3), I(4), I(5), I(6), I(7), I(8), b[36] != 0, 1);
        }
        else
        {
            int vocab = I(5);
            h = new Header(I(0), I(1), I(2), I(3), I(4), Math.Abs(vocab), I(6), vocab > 0, 0);
        }
        Check(path, "dim", h.Dim > 0, $"dim {h.Dim} must be positive");
        Check(path, "hidden_dim", h.HiddenDim > 0, $"hidden_dim {h.HiddenDim} must be positive");
        Check(path, "n_layers", h.Layers > 0, $"n_layers {h.Layers} must be positive");
        Check(path, "n_heads", h.Heads > 0 && h.Dim % h.Heads == 0, $"n_heads {h.Heads} must be positive and divide dim {h.Dim}");
        Check(path, "n_heads", h.HeadSize % 2 == 0, $"head size {h.HeadSize} (dim / n_heads) must be even for RoPE");
        Check(path, "n_kv_heads", h.KvHeads > 0 && h.Heads % h.KvHeads == 0, $"n_kv_heads {h.KvHeads} must be positive and divide n_heads {h.Heads}");
        Check(path, "vocab_size", h.VocabSize > 0, $"vocab_size {h.VocabSize} must be non-zero");
        Check(path, "seq_len", h.SeqLen > 0, $"seq_len {h.SeqLen} must be positive");
        long expected;
        try { expected = checked(HeaderBytes(h) + 4 * FloatCount(h)); }
        catch (OverflowException) { throw new CheckpointFormatException(path, "header", "sizes overflow; the header is corrupt"); }
        if (expected != fileLength)
            throw new CheckpointFormatException(path, "header", $"dim {h.Dim}, hidden_dim {h.HiddenDim}, n_layers {h.Layers}, n_heads {h.Heads}, n_kv_heads {h.KvHeads}, " +
                $"vocab_size {(h.Shared ? "" : "-")}{h.VocabSize}, seq_len {h.SeqLen} imply {expected} bytes but the file has {fileLength}; it is truncated, or not a llama2.c checkpoint");
        return h;
    }

    private static void Check(string path, string field, bool ok, string message)
    {
        if (!ok) throw new CheckpointFormatException(path, field, $"impossible header value: {message}; the file is corrupt or not a llama2.c checkpoint");
    }

    private static long HeaderBytes(Header h) => h.Version == 0 ? 28 : 256;

    private static long FloatCount(Header h)
    {
        long d = h.Dim, L = h.Layers, hid = h.HiddenDim, v = h.VocabSize, kv = h.KvDim;
        long n = v * d + L * d * 2 + L * d * d * 2 + L * kv * d * 2 + L * hid * d * 3 + d;
        if (h.Version == 0) n += 2L * h.SeqLen * (h.HeadSize / 2);
        if (!h.Shared) n += v * d;
        return n;
    }

    /// <summary>Opens <paramref name="binPath"/> as an HF-named LLaMA source.</summary>
    public static ModelSource Open(string binPath)
    {
        if (!File.Exists(binPath)) throw new ModelFileNotFoundException(binPath, "the llama2.c checkpoint does not exist");
        var h = ReadHeader(binPath);
        var file = new MappedFile(binPath);
        var src = new RenamedTensorSource(binPath);
        src.Own(file);
        try
        {
            long d = h.Dim, L = h.Layers, hid = h.HiddenDim, v = h.VocabSize, kv = h.KvDim;
            long at = HeaderBytes(h);
            // Region = one stacked array; Take reserves it and returns its offset.
            long Take(long floats) { long o = at; at += floats * 4; return o; }
            void Whole(string name, long offset, params long[] shape) =>
                src.AddView(name, DType.F32, new Shape(shape), binPath, $"{binPath}@{offset}",
                    () => new TensorView(DType.F32, new Shape(shape), (nint)(file.Pointer + offset), new Shape(shape).ElementCount * 4));
            void PerLayer(string hfSuffix, long offset, params long[] shape)
            {
                long bytes = new Shape(shape).ElementCount * 4;
                for (int l = 0; l < L; l++) Whole($"model.layers.{l}.{hfSuffix}", offset + l * bytes, shape);
            }

            long emb, attNorm, ffnNorm, finalNorm, wq, wk, wv, wo, w1, w2, w3;
            if (h.Version == 0)
            {
                emb = Take(v * d); attNorm = Take(L * d);
                wq = Take(L * d * d); wk = Take(L * kv * d); wv = Take(L * kv * d); wo = Take(L * d * d);
                ffnNorm = Take(L * d);
                w1 = Take(L * hid * d); w2 = Take(L * d * hid); w3 = Take(L * hid * d);
                finalNorm = Take(d);
                Take(2L * h.SeqLen * (h.HeadSize / 2)); // freq_cis_real/imag: run.c recomputes them
            }
            else
            {
                attNorm = Take(L * d); ffnNorm = Take(L * d); finalNorm = Take(d); emb = Take(v * d);
                wq = Take(L * d * d); wk = Take(L * kv * d); wv = Take(L * kv * d); wo = Take(L * d * d);
                w1 = Take(L * hid * d); w2 = Take(L * d * hid); w3 = Take(L * hid * d);
            }
            Whole("model.embed_tokens.weight", emb, v, d);
            PerLayer("input_layernorm.weight", attNorm, d);
            PerLayer("self_attn.q_proj.weight", wq, d, d);
            PerLayer("self_attn.k_proj.weight", wk, kv, d);
            PerLayer("self_attn.v_proj.weight", wv, kv, d);
            PerLayer("self_attn.o_proj.weight", wo, d, d);
            PerLayer("post_attention_layernorm.weight", ffnNorm, d);
            PerLayer("mlp.gate_proj.weight", w1, hid, d);
            PerLayer("mlp.down_proj.weight", w2, d, hid);
            PerLayer("mlp.up_proj.weight", w3, hid, d);
            Whole("model.norm.weight", finalNorm, d);
            if (!h.Shared) Whole("lm_head.weight", Take(v * d), v, d);
            if (at != file.Length) throw new CheckpointFormatException(binPath, "header", $"tensor layout ends at {at}, file has {file.Length} bytes");

            var hp = new LlamaHyperParams(h.Dim, h.Layers, h.Heads, h.KvHeads, h.HiddenDim, h.VocabSize, 1e-5, 10000.0, h.SeqLen, h.Shared);
            return new ModelSource
            {
                Directory = Path.GetDirectoryName(Path.GetFullPath(binPath))!,
                Config = hp.ToHfConfig(DType.F32, 1, 2, h.Version == 0 ? "llama2c" : "llama2c-v1"),
                ConfigPath = binPath,
                Weights = src,
                Layout = WeightLayout.InterleavedRope,
            };
        }
        catch
        {
            src.Dispose();
            throw;
        }
    }
}
