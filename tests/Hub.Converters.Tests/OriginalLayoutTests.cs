using System.Buffers.Binary;
using Hub.Models;
using Hub.Tests;
using Hub.Weights;

namespace Hub.Converters.Tests;

public sealed class OriginalLayoutTests : IDisposable
{
    private readonly string _dir = SharedDir.TempDir("orig");

    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>transformers' permute: w.view(h, hd/2, 2, dim).transpose(1, 2).reshape(h*hd, dim), on raw rows.</summary>
    private static byte[] PermuteRows(ReadOnlySpan<byte> w, int heads, int rows, int rowBytes)
    {
        int hd = rows / heads;
        var dst = new byte[w.Length];
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < hd / 2; i++)
                for (int c = 0; c < 2; c++)
                {
                    int src = h * hd + 2 * i + c;     // Meta row (interleaved pairs)
                    int to = h * hd + c * (hd / 2) + i; // HF row (halves)
                    w.Slice(src * rowBytes, rowBytes).CopyTo(dst.AsSpan(to * rowBytes, rowBytes));
                }
        return dst;
    }

    private static readonly string[] LlamaNames = BuildLlamaNames(2, tied: false);

    private static string[] BuildLlamaNames(int layers, bool tied)
    {
        var n = new List<string> { "model.embed_tokens.weight", "model.norm.weight" };
        if (!tied) n.Add("lm_head.weight");
        for (int l = 0; l < layers; l++)
            foreach (var s in new[] { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm" })
                n.Add($"model.layers.{l}.{s}.weight");
        return n.OrderBy(x => x, StringComparer.Ordinal).ToArray();
    }

    private static void AssertMatchesHfAfterPermutation(ModelSource src, ITensorSource hf, int heads, int kvHeads)
    {
        foreach (var name in hf.Names)
        {
            Assert.True(src.Weights.TryGetInfo(name, out var info), name);
            Assert.True(hf.TryGetInfo(name, out var hinfo));
            Assert.Equal(hinfo.Shape, info.Shape);
            Assert.Equal(hinfo.DType, info.DType);
            var mine = src.Weights.Open(name).Bytes.ToArray();
            if (name.EndsWith("q_proj.weight", StringComparison.Ordinal))
                mine = PermuteRows(mine, heads, (int)info.Shape[0], (int)info.Shape[1] * info.DType.SizeOf());
            else if (name.EndsWith("k_proj.weight", StringComparison.Ordinal))
                mine = PermuteRows(mine, kvHeads, (int)info.Shape[0], (int)info.Shape[1] * info.DType.SizeOf());
            Assert.True(mine.AsSpan().SequenceEqual(hf.Open(name).Bytes), $"{name} differs from llama-tiny");
        }
    }

    [SkippableFact]
    public void Meta_layout_opens_as_hf_llama_and_permuted_qk_equal_llama_tiny_bit_for_bit()
    {
        using var hf = CheckpointLoader.OpenFolder(SharedDir.Require("fixtures/llama-tiny"));
        var src = MetaCheckpoint.Open(SharedDir.Require("fixtures/llama-tiny-meta"));
        using var _ = src.Weights;
        Assert.Equal(WeightLayout.InterleavedRope, src.Layout);
        Assert.EndsWith("params.json", src.ConfigPath);
        var c = src.Config;
        Assert.Equal("llama", (string?)c["model_type"]);
        Assert.Equal("LlamaForCausalLM", (string?)c["architectures"]![0]);
        Assert.Equal(64, (int)c["hidden_size"]!);
        Assert.Equal(172, (int)c["intermediate_size"]!);
        Assert.Equal(2, (int)c["num_hidden_layers"]!);
        Assert.Equal(8, (int)c["num_attention_heads"]!);
        Assert.Equal(4, (int)c["num_key_value_heads"]!);
        Assert.Equal(512, (int)c["vocab_size"]!);
        Assert.Equal(1e-5, (double)c["rms_norm_eps"]!);
        Assert.Equal(10000.0, (double)c["rope_theta"]!);
        Assert.False((bool)c["tie_word_embeddings"]!);
        Assert.Equal("bfloat16", (string?)c["torch_dtype"]);
        Assert.Equal(LlamaNames, src.Weights.Names.OrderBy(x => x, StringComparer.Ordinal));
        AssertMatchesHfAfterPermutation(src, hf, 8, 4);
        var hfConfig = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(SharedDir.Require("fixtures/llama-tiny/config.json")))!.AsObject();
        foreach (var key in new[] { "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                     "rms_norm_eps", "rope_theta", "vocab_size", "max_position_embeddings", "tie_word_embeddings", "bos_token_id", "eos_token_id",
                     "hidden_act", "model_type", "torch_dtype", "attention_bias", "mlp_bias" })
            Assert.True(System.Text.Json.Nodes.JsonNode.DeepEquals(hfConfig[key], c[key]) || (double?)hfConfig[key] == (double?)c[key], $"{key}: {hfConfig[key]} vs {c[key]}");
    }

    private void WriteMetaSplit(string dir, int shards, IEnumerable<int> write)
    {
        Directory.CreateDirectory(dir);
        File.Copy(SharedDir.Require("fixtures/llama-tiny-meta/params.json"), Path.Combine(dir, "params.json"));
        using var t = TorchCheckpoint.Open(SharedDir.Require("fixtures/llama-tiny-meta/consolidated.00.pth"));
        foreach (int r in write)
        {
            var parts = new List<TorchZipBuilder.Tensor>();
            foreach (var n in t.Names)
            {
                var v = t.OpenTensor(n);
                var shape = v.Shape.ToArray();
                int es = v.DType.SizeOf();
                int axis = n.EndsWith("norm.weight", StringComparison.Ordinal) ? -1
                    : n is "tok_embeddings.weight" || n.Contains(".wo.") || n.Contains(".w2.") ? 1 : 0;
                byte[] data;
                if (axis < 0) data = v.Bytes.ToArray();
                else if (axis == 0)
                {
                    long rows = shape[0] / shards;
                    int rowBytes = (int)shape[1] * es;
                    data = v.Bytes.Slice((int)(r * rows * rowBytes), (int)(rows * rowBytes)).ToArray();
                    shape[0] = rows;
                }
                else
                {
                    long cols = shape[1] / shards;
                    var ms = new MemoryStream();
                    for (int row = 0; row < shape[0]; row++)
                        ms.Write(v.Bytes.Slice((int)((row * shape[1] + r * cols) * es), (int)(cols * es)));
                    data = ms.ToArray();
                    shape[1] = cols;
                }
                parts.Add(new TorchZipBuilder.Tensor(n, v.DType, shape, data));
            }
            TorchZipBuilder.Write(Path.Combine(dir, $"consolidated.{r:00}.pth"), parts, folder: $"consolidated.{r:00}");
        }
    }

    [SkippableFact]
    public void Meta_model_parallel_shards_merge_to_the_single_shard_tensors()
    {
        var d = Path.Combine(_dir, "mp2");
        WriteMetaSplit(d, 2, new[] { 0, 1 });
        var one = MetaCheckpoint.Open(SharedDir.Require("fixtures/llama-tiny-meta"));
        var two = MetaCheckpoint.Open(d);
        using var a = one.Weights;
        using var b = two.Weights;
        Assert.Equal(one.Config.ToJsonString(), two.Config.ToJsonString());
        var lazy = (ILazyTensorSource)b;
        foreach (var n in a.Names)
        {
            Assert.True(b.TryGetInfo(n, out var info), n);
            Assert.True(a.Open(n).Bytes.SequenceEqual(b.Open(n).Bytes), $"{n} differs after merging");
            Assert.Equal(a.Open(n).ToFloat32(), lazy.GetLazy(info).ToFloat32());
        }
        b.TryGetInfo("model.layers.0.self_attn.o_proj.weight", out var wo);
        Assert.False(lazy.GetLazy(wo).IsPassthrough);
    }

    [SkippableFact]
    public void Missing_model_parallel_shard_is_detected_from_the_shapes()
    {
        var d = Path.Combine(_dir, "mp-missing");
        WriteMetaSplit(d, 2, new[] { 0 });
        var e = Assert.Throws<ModelFileNotFoundException>(() => MetaCheckpoint.Open(d));
        Assert.Contains("consolidated.01.pth", e.Message);
        Assert.Contains("params.json", e.Message);
    }

    [SkippableFact]
    public void Gap_in_model_parallel_numbering_names_the_missing_shard()
    {
        var d = Path.Combine(_dir, "mp-gap");
        WriteMetaSplit(d, 2, new[] { 0, 1 });
        File.Move(Path.Combine(d, "consolidated.01.pth"), Path.Combine(d, "consolidated.02.pth"));
        var e = Assert.Throws<ModelFileNotFoundException>(() => MetaCheckpoint.Open(d));
        Assert.Contains("consolidated.01.pth", e.Message);
    }

    [SkippableFact]
    public void Params_json_disagreeing_with_checkpoint_names_both_files()
    {
        var d = Path.Combine(_dir, "wrongdim");
        Directory.CreateDirectory(d);
        File.Copy(SharedDir.Require("fixtures/llama-tiny-meta/consolidated.00.pth"), Path.Combine(d, "consolidated.00.pth"));
        File.WriteAllText(Path.Combine(d, "params.json"),
            "{\"dim\": 128, \"multiple_of\": 4, \"n_heads\": 8, \"n_layers\": 2, \"norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"vocab_size\": 512, \"n_kv_heads\": 4}");
        var e = Assert.ThrowsAny<CheckpointFormatException>(() => MetaCheckpoint.Open(d));
        Assert.Contains("params.json", e.Message);
        Assert.Contains("consolidated.00.pth", e.Message);
        Assert.NotNull(e.TensorName);
    }

    [SkippableFact]
    public void Params_json_with_wrong_layer_count_is_rejected()
    {
        var d = Path.Combine(_dir, "wronglayers");
        Directory.CreateDirectory(d);
        File.Copy(SharedDir.Require("fixtures/llama-tiny-meta/consolidated.00.pth"), Path.Combine(d, "consolidated.00.pth"));
        File.WriteAllText(Path.Combine(d, "params.json"),
            "{\"dim\": 64, \"multiple_of\": 4, \"n_heads\": 8, \"n_layers\": 3, \"norm_eps\": 1e-05, \"vocab_size\": 512, \"n_kv_heads\": 4}");
        var e = Assert.ThrowsAny<CheckpointFormatException>(() => MetaCheckpoint.Open(d));
        Assert.Contains("n_layers", e.Message);
        Assert.Contains("params.json", e.Message);
    }

    [SkippableFact]
    public void Aquila_flagai_opens_as_llama_with_meta_tensors_renamed()
    {
        var dir = SharedDir.Require("fixtures/aquila-tiny-flagai");
        var src = FlagAiCheckpoint.Open(dir);
        using var _ = src.Weights;
        using var raw = TorchCheckpoint.Open(Path.Combine(dir, "pytorch_model.bin"));
        Assert.Equal(WeightLayout.InterleavedRope, src.Layout);
        Assert.Equal("llama", (string?)src.Config["model_type"]);
        Assert.Equal("flagai", (string?)src.Config["hub_source_format"]);
        Assert.Equal(8, (int)src.Config["num_key_value_heads"]!);
        Assert.Equal(8, (int)src.Config["num_attention_heads"]!);
        Assert.Equal(172, (int)src.Config["intermediate_size"]!);
        Assert.Equal(256, (int)src.Config["max_position_embeddings"]!);
        Assert.Equal(10000.0, (double)src.Config["rope_theta"]!);
        Assert.Equal("float16", (string?)src.Config["torch_dtype"]);
        Assert.Equal(LlamaNames, src.Weights.Names.OrderBy(x => x, StringComparer.Ordinal));
        Assert.True(src.Weights.Open("model.layers.1.self_attn.q_proj.weight").Bytes.SequenceEqual(raw.OpenTensor("layers.1.attention.wq.weight").Bytes));
        Assert.True(src.Weights.Open("model.layers.0.mlp.down_proj.weight").Bytes.SequenceEqual(raw.OpenTensor("layers.0.feed_forward.w2.weight").Bytes));
        Assert.True(src.Weights.Open("lm_head.weight").Bytes.SequenceEqual(raw.OpenTensor("output.weight").Bytes));
    }

    [SkippableFact]
    public void Flagai_module_wrapper_is_unwrapped()
    {
        var d = Path.Combine(_dir, "wrapped");
        Directory.CreateDirectory(d);
        var dir = SharedDir.Require("fixtures/aquila-tiny-flagai");
        File.Copy(Path.Combine(dir, "config.json"), Path.Combine(d, "config.json"));
        using (var raw = TorchCheckpoint.Open(Path.Combine(dir, "pytorch_model.bin")))
            TorchZipBuilder.Write(Path.Combine(d, "pytorch_model.bin"),
                raw.Names.Select(n => { var v = raw.OpenTensor(n); return new TorchZipBuilder.Tensor(n, v.DType, v.Shape.ToArray(), v.Bytes.ToArray()); }).ToList(),
                orderedDict: true, wrapKey: "module");
        var src = SourceDetector.Detect(d);
        using var _ = src.Weights;
        Assert.Equal("flagai", (string?)src.Config["hub_source_format"]);
        Assert.Equal(LlamaNames, src.Weights.Names.OrderBy(x => x, StringComparer.Ordinal));
    }

    private static float[] FloatsAt(byte[] file, long offset, int count) =>
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(file.AsSpan((int)offset, count * 4)).ToArray();

    [SkippableFact]
    public void Stories260K_opens_as_zero_copy_llama_slices()
    {
        var bin = SharedDir.Require("models/karpathy/tinyllamas/stories260K/stories260K.bin");
        var bytes = File.ReadAllBytes(bin);
        var src = Llama2cCheckpoint.Open(bin);
        using var _ = src.Weights;
        var c = src.Config;
        Assert.Equal(WeightLayout.InterleavedRope, src.Layout);
        Assert.Equal(64, (int)c["hidden_size"]!);
        Assert.Equal(172, (int)c["intermediate_size"]!);
        Assert.Equal(5, (int)c["num_hidden_layers"]!);
        Assert.Equal(8, (int)c["num_attention_heads"]!);
        Assert.Equal(4, (int)c["num_key_value_heads"]!);
        Assert.Equal(512, (int)c["vocab_size"]!);
        Assert.Equal(512, (int)c["max_position_embeddings"]!);
        Assert.True((bool)c["tie_word_embeddings"]!);
        Assert.Equal(1, (int)c["bos_token_id"]!);
        Assert.Equal(2, (int)c["eos_token_id"]!);
        Assert.Equal(BuildLlamaNames(5, tied: true), src.Weights.Names.OrderBy(x => x, StringComparer.Ordinal));

        // Offsets from the model README's table.
        Assert.Equal(FloatsAt(bytes, 28, 512 * 64), src.Weights.Open("model.embed_tokens.weight").ToFloat32());
        Assert.Equal(FloatsAt(bytes, 131_100 + 3 * 64 * 4, 64), src.Weights.Open("model.layers.3.input_layernorm.weight").ToFloat32());
        Assert.Equal(FloatsAt(bytes, 132_380 + 1 * 64 * 64 * 4, 64 * 64), src.Weights.Open("model.layers.1.self_attn.q_proj.weight").ToFloat32());
        Assert.Equal(FloatsAt(bytes, 214_300 + 4 * 32 * 64 * 4, 32 * 64), src.Weights.Open("model.layers.4.self_attn.k_proj.weight").ToFloat32());
        Assert.Equal(FloatsAt(bytes, 599_580 + 2 * 64 * 172 * 4, 64 * 172), src.Weights.Open("model.layers.2.mlp.down_proj.weight").ToFloat32());
        Assert.Equal(FloatsAt(bytes, 819_740 + 4 * 172 * 64 * 4, 172 * 64), src.Weights.Open("model.layers.4.mlp.up_proj.weight").ToFloat32());
        Assert.Equal(FloatsAt(bytes, 1_039_900, 64), src.Weights.Open("model.norm.weight").ToFloat32());
        src.Weights.TryGetInfo("model.layers.0.mlp.down_proj.weight", out var down);
        Assert.Equal(new Shape(64, 172), down.Shape);
    }

    [SkippableFact]
    public void Llama2c_version1_export_reads_the_same_tensors_as_legacy()
    {
        var bin = SharedDir.Require("models/karpathy/tinyllamas/stories260K/stories260K.bin");
        var v0 = File.ReadAllBytes(bin);
        // Re-lay stories260K as export.py's version 1 (256-byte header, norms first, no RoPE tables).
        var ms = new MemoryStream();
        var head = new byte[256];
        BinaryPrimitives.WriteUInt32LittleEndian(head, Llama2cCheckpoint.Magic);
        BinaryPrimitives.WriteInt32LittleEndian(head.AsSpan(4), 1);
        v0.AsSpan(0, 28).CopyTo(head.AsSpan(8));
        head[36] = 1;
        ms.Write(head);
        void Copy(long off, long floats) => ms.Write(v0, (int)off, (int)(floats * 4));
        Copy(131_100, 5 * 64); Copy(378_140, 5 * 64); Copy(1_039_900, 64); Copy(28, 512 * 64);
        Copy(132_380, (378_140 - 132_380) / 4); // wq, wk, wv, wo
        Copy(379_420, (1_039_900 - 379_420) / 4); // w1, w2, w3
        var p = Path.Combine(_dir, "v1.bin");
        File.WriteAllBytes(p, ms.ToArray());

        var a = Llama2cCheckpoint.Open(bin);
        var b = Llama2cCheckpoint.Open(p);
        using var _a = a.Weights;
        using var _b = b.Weights;
        Assert.Equal(a.Weights.Names.OrderBy(x => x), b.Weights.Names.OrderBy(x => x));
        foreach (var n in a.Weights.Names)
            Assert.True(a.Weights.Open(n).Bytes.SequenceEqual(b.Weights.Open(n).Bytes), n);
        Assert.Equal("llama2c-v1", (string?)b.Config["hub_source_format"]);
    }

    [SkippableFact]
    public void Llama2c_negative_vocab_means_an_untied_classifier_after_the_rope_tables()
    {
        var bin = SharedDir.Require("models/karpathy/tinyllamas/stories260K/stories260K.bin");
        var v0 = File.ReadAllBytes(bin);
        var wcls = new byte[512 * 64 * 4];
        for (int i = 0; i < 512 * 64; i++) BinaryPrimitives.WriteSingleLittleEndian(wcls.AsSpan(4 * i), i * 0.001f);
        var untied = v0.Concat(wcls).ToArray();
        BinaryPrimitives.WriteInt32LittleEndian(untied.AsSpan(20), -512);
        var p = Path.Combine(_dir, "untied.bin");
        File.WriteAllBytes(p, untied);
        var src = Llama2cCheckpoint.Open(p);
        using var _ = src.Weights;
        Assert.False((bool)src.Config["tie_word_embeddings"]!);
        Assert.Equal(512, (int)src.Config["vocab_size"]!);
        Assert.Equal(BuildLlamaNames(5, tied: false), src.Weights.Names.OrderBy(x => x, StringComparer.Ordinal));
        Assert.True(src.Weights.Open("lm_head.weight").Bytes.SequenceEqual(wcls));
        Assert.True(src.Weights.Open("model.embed_tokens.weight").Bytes.SequenceEqual(v0.AsSpan(28, 512 * 64 * 4)));
    }

    private string Llama2cFile(int[] header, long floats, string name = "m.bin")
    {
        var p = Path.Combine(_dir, name);
        var b = new byte[28 + floats * 4];
        for (int i = 0; i < 7; i++) BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(4 * i), header[i]);
        File.WriteAllBytes(p, b);
        return p;
    }

    [Theory]
    [InlineData(new[] { 0, 172, 5, 8, 4, 512, 512 }, "dim")]
    [InlineData(new[] { 64, -3, 5, 8, 4, 512, 512 }, "hidden_dim")]
    [InlineData(new[] { 64, 172, 0, 8, 4, 512, 512 }, "n_layers")]
    [InlineData(new[] { 64, 172, 5, 7, 7, 512, 512 }, "n_heads")]
    [InlineData(new[] { 64, 172, 5, 8, 3, 512, 512 }, "n_kv_heads")]
    [InlineData(new[] { 64, 172, 5, 8, 4, 512, 0 }, "seq_len")]
    public void Llama2c_impossible_header_names_the_field(int[] header, string field)
    {
        var p = Llama2cFile(header, 264_128);
        var e = Assert.ThrowsAny<CheckpointFormatException>(() => Llama2cCheckpoint.Open(p));
        Assert.Equal(field, e.TensorName);
        Assert.Contains(p, e.Message);
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public void Llama2c_file_size_not_matching_header_is_rejected()
    {
        var p = Llama2cFile(new[] { 64, 172, 5, 8, 4, 512, 512 }, 264_128 - 1);
        var e = Assert.ThrowsAny<CheckpointFormatException>(() => Llama2cCheckpoint.Open(p));
        Assert.Contains("1056536", e.Message);
        Assert.Contains("1056540", e.Message);
        Assert.Contains(p, e.Message);
    }

    [Fact]
    public void Llama2c_version2_int8_export_is_detected_and_refused_clearly()
    {
        var p = Path.Combine(_dir, "q80.bin");
        var b = new byte[512];
        BinaryPrimitives.WriteUInt32LittleEndian(b, Llama2cCheckpoint.Magic);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(4), 2);
        File.WriteAllBytes(p, b);
        var e = Assert.ThrowsAny<CheckpointFormatException>(() => Llama2cCheckpoint.Open(p));
        Assert.Contains("version 2", e.Message);
    }

    [SkippableFact]
    public void Detector_recognizes_every_layout()
    {
        var hf = SourceDetector.Detect(SharedDir.Require("fixtures/llama-tiny"));
        using (hf.Weights)
        {
            Assert.Equal(WeightLayout.HuggingFace, hf.Layout);
            Assert.IsType<ShardedCheckpoint>(hf.Weights);
            Assert.Equal("llama", (string?)hf.Config["model_type"]);
        }
        var meta = SourceDetector.Detect(SharedDir.Require("fixtures/llama-tiny-meta"));
        using (meta.Weights) Assert.Equal("meta", (string?)meta.Config["hub_source_format"]);
        var aq = SourceDetector.Detect(SharedDir.Require("fixtures/aquila-tiny-flagai"));
        using (aq.Weights) Assert.Equal("flagai", (string?)aq.Config["hub_source_format"]);
        var l2c = SourceDetector.Detect(SharedDir.Require("models/karpathy/tinyllamas/stories260K/stories260K.bin"));
        using (l2c.Weights) Assert.Equal("llama2c", (string?)l2c.Config["hub_source_format"]);
        var l2cDir = SourceDetector.Detect(SharedDir.Require("models/karpathy/tinyllamas/stories260K"));
        using (l2cDir.Weights) Assert.Equal("llama2c", (string?)l2cDir.Config["hub_source_format"]);
        var gpt2 = SourceDetector.Detect(SharedDir.Require("fixtures/gpt2-tiny-bin"), "hf");
        using (gpt2.Weights) Assert.IsType<TorchCheckpoint>(gpt2.Weights);
        var forced = SourceDetector.Detect(SharedDir.Require("fixtures/llama-tiny-meta"), "meta");
        using (forced.Weights) Assert.Equal(WeightLayout.InterleavedRope, forced.Layout);
    }

    [SkippableTheory]
    [InlineData("fixtures/bert-tiny-cls", "bert")]
    [InlineData("fixtures/dien-tiny", "dien")]
    [InlineData("fixtures/gpt2-tiny", "gpt2")]
    [InlineData("fixtures/chatglm1-tiny", "chatglm")]
    [InlineData("models/sentence-transformers/all-MiniLM-L6-v2", "bert")]
    public void Every_hf_folder_is_detected_and_every_tensor_opens(string folder, string modelType)
    {
        var src = SourceDetector.Detect(SharedDir.Require(folder));
        using var _ = src.Weights;
        Assert.Equal(WeightLayout.HuggingFace, src.Layout);
        Assert.Equal(modelType, (string?)src.Config["model_type"]);
        Assert.NotEmpty(src.Weights.Names);
        foreach (var n in src.Weights.Names)
        {
            Assert.True(src.Weights.TryGetInfo(n, out var info));
            var v = src.Weights.Open(n);
            Assert.Equal(info.Shape, v.Shape);
            Assert.Equal(info.Shape.ElementCount * info.DType.SizeOf(), v.ByteLength);
        }
    }

    [Fact]
    public void Detection_failure_lists_what_the_folder_holds()
    {
        File.WriteAllText(Path.Combine(_dir, "notes.txt"), "hello");
        File.WriteAllBytes(Path.Combine(_dir, "weights.gguf"), new byte[16]);
        var e = Assert.Throws<UnsupportedModelException>(() => SourceDetector.Detect(_dir));
        Assert.Contains("notes.txt", e.Message);
        Assert.Contains("weights.gguf", e.Message);
        Assert.Contains("params.json", e.Message);
        Assert.Contains("--from", e.Message);
    }

    [Fact]
    public void Forced_llama2c_on_a_folder_without_one_lists_the_folder()
    {
        File.WriteAllText(Path.Combine(_dir, "readme.md"), "x");
        var e = Assert.Throws<UnsupportedModelException>(() => SourceDetector.Detect(_dir, "llama2c"));
        Assert.Contains("readme.md", e.Message);
    }

    [Fact]
    public void Unknown_source_format_is_rejected()
    {
        var e = Assert.Throws<UnsupportedModelException>(() => SourceDetector.Detect(_dir, "gguf"));
        Assert.Contains("llama2c", e.Message);
    }
}
