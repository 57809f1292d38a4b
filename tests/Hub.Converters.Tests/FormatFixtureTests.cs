using Hub.Tests;
using Hub.Weights;

namespace Hub.Converters.Tests;

public class FormatFixtureTests
{
    private static void AssertTensor(ITensorSource s, string name, DType dtype, params long[] shape)
    {
        Assert.True(s.TryGetInfo(name, out var info), $"{name} missing from {s.Location}");
        Assert.Equal(dtype, info.DType);
        Assert.Equal(new Shape(shape), info.Shape);
        var v = s.Open(name);
        Assert.Equal(dtype, v.DType);
        Assert.Equal(new Shape(shape), v.Shape);
    }

    private static void AssertGpt2Names(ITensorSource s, DType dt)
    {
        AssertTensor(s, "transformer.wte.weight", dt, 50257, 64);
        AssertTensor(s, "transformer.wpe.weight", dt, 128, 64);
        for (int l = 0; l < 2; l++)
        {
            AssertTensor(s, $"transformer.h.{l}.attn.c_attn.weight", dt, 64, 192);
            AssertTensor(s, $"transformer.h.{l}.attn.c_attn.bias", dt, 192);
            AssertTensor(s, $"transformer.h.{l}.attn.c_proj.weight", dt, 64, 64);
            AssertTensor(s, $"transformer.h.{l}.mlp.c_fc.weight", dt, 64, 256);
            AssertTensor(s, $"transformer.h.{l}.mlp.c_proj.weight", dt, 256, 64);
            AssertTensor(s, $"transformer.h.{l}.ln_1.weight", dt, 64);
            AssertTensor(s, $"transformer.h.{l}.ln_2.bias", dt, 64);
        }
        AssertTensor(s, "transformer.ln_f.weight", dt, 64);
    }

    [SkippableFact]
    public void Gpt2_safetensors_opens_with_names_shapes_and_metadata()
    {
        var dir = SharedDir.Require("fixtures/gpt2-tiny");
        using var st = SafetensorsFile.Open(Path.Combine(dir, "model.safetensors"));
        AssertGpt2Names(st, DType.F32);
        Assert.Equal(28, st.Names.Count);
        Assert.False(st.TryGetInfo("lm_head.weight", out _));
        Assert.Equal("pt", st.Metadata["format"]);
        Assert.Equal(st.Names.OrderBy(n => n, StringComparer.Ordinal), st.Names);
        // LayerNorm weights are random, not 1: a plausibility check that we read real bytes at the right offset.
        var ln = st.OpenTensor("transformer.ln_f.weight").ToFloat32();
        Assert.Contains(ln, x => x != 1f);
        Assert.All(ln, x => Assert.True(float.IsFinite(x) && Math.Abs(x) < 10));
    }

    [SkippableFact]
    public void CheckpointLoader_prefers_safetensors_and_finds_torch_bin()
    {
        using (var s = CheckpointLoader.OpenFolder(SharedDir.Require("fixtures/gpt2-tiny"))) Assert.IsType<SafetensorsFile>(s);
        using (var s = CheckpointLoader.OpenFolder(SharedDir.Require("fixtures/gpt2-tiny-bin"))) Assert.IsType<TorchCheckpoint>(s);
        using (var s = CheckpointLoader.OpenFolder(SharedDir.Require("fixtures/llama-tiny"))) Assert.IsType<ShardedCheckpoint>(s);
        using (var s = CheckpointLoader.OpenFolder(SharedDir.Require("fixtures/chatglm2-tiny"))) Assert.IsType<ShardedCheckpoint>(s);
    }

    [SkippableFact]
    public void Gpt2_torch_bin_opens_and_lm_head_shares_wte_storage()
    {
        var dir = SharedDir.Require("fixtures/gpt2-tiny-bin");
        using var t = TorchCheckpoint.Open(Path.Combine(dir, "pytorch_model.bin"));
        AssertGpt2Names(t, DType.F16);
        AssertTensor(t, "lm_head.weight", DType.F16, 50257, 64);
        Assert.Equal(29, t.Names.Count);
        var wte = t.OpenTensor("transformer.wte.weight");
        var head = t.OpenTensor("lm_head.weight");
        Assert.Equal(wte.Pointer, head.Pointer); // the same storage, viewed twice, zero-copy
        Assert.True(wte.Bytes.SequenceEqual(head.Bytes));
        var w = wte.ToFloat32();
        Assert.Contains(w, x => x != 0);
        Assert.All(w.Take(1000), x => Assert.True(float.IsFinite(x)));
    }

    [SkippableFact]
    public void Llama_sharded_bf16_safetensors_opens_with_layer_split_across_shards()
    {
        var dir = SharedDir.Require("fixtures/llama-tiny");
        using var s = ShardedCheckpoint.Open(Path.Combine(dir, "model.safetensors.index.json"));
        Assert.Equal(2, s.ShardFiles.Count);
        Assert.Equal(21, s.Names.Count);
        AssertTensor(s, "model.embed_tokens.weight", DType.BF16, 512, 64);
        AssertTensor(s, "lm_head.weight", DType.BF16, 512, 64);
        AssertTensor(s, "model.norm.weight", DType.BF16, 64);
        for (int l = 0; l < 2; l++)
        {
            AssertTensor(s, $"model.layers.{l}.self_attn.q_proj.weight", DType.BF16, 64, 64);
            AssertTensor(s, $"model.layers.{l}.self_attn.k_proj.weight", DType.BF16, 32, 64);
            AssertTensor(s, $"model.layers.{l}.self_attn.v_proj.weight", DType.BF16, 32, 64);
            AssertTensor(s, $"model.layers.{l}.self_attn.o_proj.weight", DType.BF16, 64, 64);
            AssertTensor(s, $"model.layers.{l}.mlp.gate_proj.weight", DType.BF16, 172, 64);
            AssertTensor(s, $"model.layers.{l}.mlp.up_proj.weight", DType.BF16, 172, 64);
            AssertTensor(s, $"model.layers.{l}.mlp.down_proj.weight", DType.BF16, 64, 172);
            AssertTensor(s, $"model.layers.{l}.input_layernorm.weight", DType.BF16, 64);
            AssertTensor(s, $"model.layers.{l}.post_attention_layernorm.weight", DType.BF16, 64);
        }
        s.TryGetInfo("model.layers.1.self_attn.q_proj.weight", out var q1);
        s.TryGetInfo("model.layers.1.mlp.up_proj.weight", out var up1);
        Assert.EndsWith("model-00001-of-00002.safetensors", q1.FilePath);
        Assert.EndsWith("model-00002-of-00002.safetensors", up1.FilePath);
    }

    [SkippableFact]
    public void Chatglm2_sharded_torch_bin_opens()
    {
        var dir = SharedDir.Require("fixtures/chatglm2-tiny");
        using var s = CheckpointLoader.OpenFolder(dir);
        AssertTensor(s, "transformer.embedding.word_embeddings.weight", DType.F16, 1024, 64);
        AssertTensor(s, "transformer.encoder.layers.0.self_attention.query_key_value.weight", DType.F16, 128, 64);
        AssertTensor(s, "transformer.encoder.layers.1.self_attention.query_key_value.bias", DType.F16, 128);
        AssertTensor(s, "transformer.encoder.layers.1.mlp.dense_h_to_4h.weight", DType.F16, 320, 64);
        AssertTensor(s, "transformer.encoder.layers.1.mlp.dense_4h_to_h.weight", DType.F16, 64, 160);
        AssertTensor(s, "transformer.encoder.final_layernorm.weight", DType.F16, 64);
        AssertTensor(s, "transformer.output_layer.weight", DType.F16, 1024, 64);
        foreach (var n in s.Names) Assert.True(s.TryGetInfo(n, out _));
    }

    [SkippableFact]
    public void Chatglm1_sharded_torch_bin_opens_every_tensor()
    {
        var dir = SharedDir.Require("fixtures/chatglm1-tiny");
        using var s = CheckpointLoader.OpenFolder(dir);
        Assert.NotEmpty(s.Names);
        foreach (var n in s.Names)
        {
            Assert.True(s.TryGetInfo(n, out var info));
            Assert.Equal(DType.F16, info.DType);
            Assert.Equal(info.Shape.ElementCount * 2, s.Open(n).ByteLength);
        }
        Assert.Contains("transformer.word_embeddings.weight", s.Names);
    }

    [SkippableFact]
    public void Aquila_flagai_bin_is_an_ordered_dict_of_meta_names()
    {
        var dir = SharedDir.Require("fixtures/aquila-tiny-flagai");
        using var t = TorchCheckpoint.Open(Path.Combine(dir, "pytorch_model.bin"));
        AssertTensor(t, "tok_embeddings.weight", DType.F16, 512, 64);
        AssertTensor(t, "layers.1.attention.wq.weight", DType.F16, 64, 64);
        AssertTensor(t, "layers.1.attention.wk.weight", DType.F16, 64, 64);
        AssertTensor(t, "layers.0.feed_forward.w2.weight", DType.F16, 64, 172);
        AssertTensor(t, "output.weight", DType.F16, 512, 64);
    }

    [SkippableFact]
    public void Meta_pth_holds_the_same_bf16_values_as_the_hf_folder_for_unpermuted_tensors()
    {
        using var meta = TorchCheckpoint.Open(SharedDir.Require("fixtures/llama-tiny-meta/consolidated.00.pth"));
        using var hf = CheckpointLoader.OpenFolder(SharedDir.Require("fixtures/llama-tiny"));
        Assert.True(meta.OpenTensor("layers.1.attention.wv.weight").Bytes.SequenceEqual(hf.Open("model.layers.1.self_attn.v_proj.weight").Bytes));
        Assert.True(meta.OpenTensor("tok_embeddings.weight").Bytes.SequenceEqual(hf.Open("model.embed_tokens.weight").Bytes));
        Assert.True(meta.OpenTensor("layers.0.feed_forward.w2.weight").Bytes.SequenceEqual(hf.Open("model.layers.0.mlp.down_proj.weight").Bytes));
    }

    [Fact]
    public void Safetensors_writer_round_trips_sorted_and_padded()
    {
        var dir = SharedDir.TempDir("st");
        try
        {
            var p = Path.Combine(dir, "x.safetensors");
            SafetensorsWriter.Write(p, new Dictionary<string, SafetensorsTensor>
            {
                ["b"] = new(DType.F32, new Shape(2, 2), TorchZipBuilder.F32Bytes(1, 2, 3, 4)),
                ["a"] = new(DType.I64, new Shape(1), BitConverter.GetBytes(42L)),
                ["c"] = new(DType.U8, new Shape(3), new byte[] { 7, 8, 9 }),
            }, new Dictionary<string, string> { ["format"] = "pt" });
            var raw = File.ReadAllBytes(p);
            var n = BitConverter.ToInt64(raw, 0);
            Assert.Equal(0, n % 8);
            var header = System.Text.Encoding.UTF8.GetString(raw, 8, (int)n);
            Assert.StartsWith("{\"__metadata__\":{\"format\":\"pt\"},\"a\":", header);
            Assert.EndsWith("}", header.TrimEnd(' '));
            Assert.True(header.Length - header.TrimEnd(' ').Length < 8);
            using var st = SafetensorsFile.Open(p);
            Assert.Equal(new[] { "a", "b", "c" }, st.Names);
            Assert.Equal(new float[] { 1, 2, 3, 4 }, st.OpenTensor("b").ToFloat32());
            Assert.Equal(42L, st.OpenTensor("a").AsSpan<long>()[0]);
            Assert.Equal(new byte[] { 7, 8, 9 }, st.OpenTensor("c").Bytes.ToArray());
            Assert.Equal("pt", st.Metadata["format"]);
            Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Torch_noncontiguous_and_offset_tensors_are_materialized_correctly()
    {
        var dir = SharedDir.TempDir("pt");
        try
        {
            var p = Path.Combine(dir, "m.bin");
            var data = TorchZipBuilder.F32Bytes(0, 1, 2, 3, 4, 5, 6, 7);
            TorchZipBuilder.Write(p, new[]
            {
                new TorchZipBuilder.Tensor("full", DType.F32, new long[] { 2, 4 }, data, "s"),
                new TorchZipBuilder.Tensor("transposed", DType.F32, new long[] { 4, 2 }, data, "s", 0, new long[] { 1, 4 }),
                new TorchZipBuilder.Tensor("row1", DType.F32, new long[] { 4 }, data, "s", 4),
            }, folder: "weird_name", orderedDict: true, wrapKey: "module");
            using var t = TorchCheckpoint.Open(p);
            Assert.Equal(new[] { "full", "transposed", "row1" }, t.Names);
            Assert.Equal(new float[] { 0, 4, 1, 5, 2, 6, 3, 7 }, t.OpenTensor("transposed").ToFloat32());
            Assert.Equal(new float[] { 4, 5, 6, 7 }, t.OpenTensor("row1").ToFloat32());
            Assert.Equal(t.OpenTensor("full").Pointer + 16, t.OpenTensor("row1").Pointer);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Torch_non_tensor_values_are_skipped()
    {
        var dir = SharedDir.TempDir("pt");
        try
        {
            var p = Path.Combine(dir, "m.bin");
            TorchZipBuilder.Write(p, new[] { new TorchZipBuilder.Tensor("w", DType.F32, new long[] { 2 }, TorchZipBuilder.F32Bytes(1, 2)) },
                extraInts: new Dictionary<string, long> { ["global_step"] = 1000, ["epoch"] = 3 });
            using var t = TorchCheckpoint.Open(p);
            Assert.Equal(new[] { "w" }, t.Names);
            Assert.Equal(new float[] { 1, 2 }, t.OpenTensor("w").ToFloat32());
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Torch_deflated_members_are_inflated_and_copied()
    {
        var dir = SharedDir.TempDir("pt");
        try
        {
            var stored = Path.Combine(dir, "stored.bin");
            var data = TorchZipBuilder.F32Bytes(Enumerable.Range(0, 64).Select(i => (float)i).ToArray());
            TorchZipBuilder.Write(stored, new[]
            {
                new TorchZipBuilder.Tensor("a", DType.F32, new long[] { 8, 8 }, data, "s"),
                new TorchZipBuilder.Tensor("b", DType.F32, new long[] { 8 }, data, "s", 8),
            });
            var deflated = Path.Combine(dir, "deflated.bin");
            using (var src = System.IO.Compression.ZipFile.OpenRead(stored))
            using (var dst = System.IO.Compression.ZipFile.Open(deflated, System.IO.Compression.ZipArchiveMode.Create))
                foreach (var e in src.Entries)
                {
                    var ne = dst.CreateEntry(e.FullName, System.IO.Compression.CompressionLevel.Optimal);
                    using var i = e.Open();
                    using var o = ne.Open();
                    i.CopyTo(o);
                }
            using var t = TorchCheckpoint.Open(deflated);
            Assert.Equal(Enumerable.Range(0, 64).Select(i => (float)i), t.OpenTensor("a").ToFloat32());
            Assert.Equal(Enumerable.Range(8, 8).Select(i => (float)i), t.OpenTensor("b").ToFloat32());
        }
        finally { Directory.Delete(dir, true); }
    }

    [SkippableFact]
    public void Torch_bin_converts_to_safetensors_with_identical_bytes()
    {
        var dir = SharedDir.TempDir("conv");
        try
        {
            using var t = TorchCheckpoint.Open(SharedDir.Require("fixtures/gpt2-tiny-bin/pytorch_model.bin"));
            var p = Path.Combine(dir, "model.safetensors");
            SafetensorsWriter.WriteFrom(p, t);
            using var s = SafetensorsFile.Open(p);
            Assert.Equal(t.Names.OrderBy(n => n, StringComparer.Ordinal), s.Names);
            foreach (var n in t.Names)
            {
                Assert.True(t.OpenTensor(n).Bytes.SequenceEqual(s.OpenTensor(n).Bytes), n);
                Assert.Equal(t.OpenTensor(n).Shape, s.OpenTensor(n).Shape);
            }
            Assert.NotEqual(s.OpenTensor("lm_head.weight").Pointer, s.OpenTensor("transformer.wte.weight").Pointer);
        }
        finally { Directory.Delete(dir, true); }
    }
}
