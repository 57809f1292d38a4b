using System.Text;
using Hub.Tests;

namespace Hub.Converters.Tests;

public sealed class BadCheckpointTests : IDisposable
{
    private readonly string _dir = SharedDir.TempDir("bad");

    public void Dispose() => Directory.Delete(_dir, true);

    private string RawSafetensors(string header, int dataBytes, string name = "bad.safetensors", long? declaredLength = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var p = Path.Combine(_dir, name);
        using var fs = File.Create(p);
        fs.Write(BitConverter.GetBytes(declaredLength ?? h.Length));
        fs.Write(h);
        fs.Write(new byte[dataBytes]);
        return p;
    }

    private static CheckpointFormatException Throws(string path, string? tensor = null)
    {
        var e = Assert.ThrowsAny<CheckpointFormatException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Contains(path, e.Message);
        Assert.Equal(path, e.FilePath);
        if (tensor is not null)
        {
            Assert.Equal(tensor, e.TensorName);
            Assert.Contains(tensor, e.Message);
        }
        return e;
    }

    [Fact]
    public void Truncated_safetensors_shorter_than_length_prefix_throws_with_file_name()
    {
        var p = Path.Combine(_dir, "short.safetensors");
        File.WriteAllBytes(p, new byte[] { 1, 2, 3 });
        Assert.Contains("truncated", Throws(p).Message);
    }

    [Fact]
    public void Truncated_safetensors_data_throws_with_file_name()
    {
        var p = RawSafetensors("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
        Throws(p, "w");
    }

    [Fact]
    public void Header_length_past_end_of_file_throws_with_file_name()
    {
        var p = RawSafetensors("{}", 0, declaredLength: 1000);
        Assert.Contains("past the end", Throws(p).Message);
    }

    [Fact]
    public void Header_length_above_the_100MB_cap_throws()
    {
        var p = RawSafetensors("{}", 0, declaredLength: 200_000_000);
        Assert.Contains("MAX_HEADER_SIZE", Throws(p).Message);
    }

    [Fact]
    public void Overlapping_offsets_throw_naming_the_tensor()
    {
        var p = RawSafetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
        Assert.Contains("overlap", Throws(p, "b").Message);
    }

    [Fact]
    public void Hole_in_data_area_throws_as_the_rust_crate_does()
    {
        var p = RawSafetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12);
        Assert.Contains("contiguous", Throws(p, "b").Message);
    }

    [Fact]
    public void Trailing_bytes_after_the_last_tensor_throw()
    {
        var p = RawSafetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12);
        Assert.Contains("cover", Throws(p).Message);
    }

    [Fact]
    public void Out_of_range_offsets_throw_naming_the_tensor()
    {
        var p = RawSafetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"z\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,1000020]}}", 20);
        Throws(p, "z");
    }

    [Fact]
    public void Unknown_dtype_throws_naming_the_tensor()
    {
        var p = RawSafetensors("{\"w\":{\"dtype\":\"F8_E9\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
        Assert.Contains("F8_E9", Throws(p, "w").Message);
    }

    [Fact]
    public void Non_json_header_throws_with_file_name()
    {
        var p = RawSafetensors("this is not json!", 0);
        Assert.Contains("JSON", Throws(p).Message);
    }

    [Fact]
    public void Header_missing_data_offsets_throws_naming_the_tensor()
    {
        var p = RawSafetensors("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4);
        Assert.Contains("data_offsets", Throws(p, "w").Message);
    }

    [Fact]
    public void Header_that_is_an_array_throws()
    {
        var p = RawSafetensors("[1,2,3]", 0);
        Assert.Contains("object", Throws(p).Message);
    }

    [Fact]
    public void Shape_and_byte_length_mismatch_throws_naming_the_tensor()
    {
        var p = RawSafetensors("{\"w\":{\"dtype\":\"F16\",\"shape\":[3,3],\"data_offsets\":[0,16]}}", 16);
        Assert.Contains("18", Throws(p, "w").Message);
    }

    private string PickleZip(byte[] pkl, string name = "evil.bin")
    {
        var p = Path.Combine(_dir, name);
        TorchZipBuilder.WriteZip(p, new[] { ("archive/data.pkl", pkl), ("archive/version", Encoding.ASCII.GetBytes("3\n")) });
        return p;
    }

    private static byte[] GlobalReduce(string module, string name, string arg)
    {
        var p = new List<byte> { 0x80, 2 };
        TorchZipBuilder.Global(p, module, name);
        TorchZipBuilder.Str(p, arg);
        p.Add(0x85); // TUPLE1
        p.Add((byte)'R');
        p.Add((byte)'.');
        return p.ToArray();
    }

    [Fact]
    public void Pickle_naming_os_system_is_rejected_before_anything_runs()
    {
        var marker = Path.Combine(_dir, "pwned");
        var p = PickleZip(GlobalReduce("os", "system", $"touch {marker}"));
        var e = Assert.Throws<UnsafePickleException>(() => TorchCheckpoint.Open(p).Dispose());
        Assert.Equal("os.system", e.Global);
        Assert.Contains(p, e.Message);
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public void Pickle_naming_builtins_eval_is_rejected()
    {
        var marker = Path.Combine(_dir, "pwned2");
        var p = PickleZip(GlobalReduce("builtins", "eval", $"open('{marker}','w')"));
        var e = Assert.Throws<UnsafePickleException>(() => TorchCheckpoint.Open(p).Dispose());
        Assert.Equal("builtins.eval", e.Global);
        Assert.Contains(p, e.Message);
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public void Pickle_naming_posix_system_through_stack_global_is_rejected()
    {
        var pkl = new List<byte> { 0x80, 4 };
        pkl.Add(0x8c); pkl.Add(5); pkl.AddRange(Encoding.ASCII.GetBytes("posix"));
        pkl.Add(0x8c); pkl.Add(6); pkl.AddRange(Encoding.ASCII.GetBytes("system"));
        pkl.Add(0x93);
        TorchZipBuilder.Str(pkl, "id");
        pkl.Add(0x85); pkl.Add((byte)'R'); pkl.Add((byte)'.');
        var p = PickleZip(pkl.ToArray());
        var e = Assert.Throws<UnsafePickleException>(() => TorchCheckpoint.Open(p).Dispose());
        Assert.Equal("posix.system", e.Global);
    }

    [Fact]
    public void Pickle_instantiating_a_class_is_rejected()
    {
        // NEWOBJ on an allowed global still never creates arbitrary objects.
        var pkl = new List<byte> { 0x80, 2 };
        TorchZipBuilder.Global(pkl, "collections", "OrderedDict");
        pkl.Add((byte)')'); pkl.Add(0x81); pkl.Add((byte)'.');
        var p = PickleZip(pkl.ToArray());
        var e = Assert.ThrowsAny<CheckpointFormatException>(() => TorchCheckpoint.Open(p).Dispose());
        Assert.Contains(p, e.Message);
    }

    [Fact]
    public void Torch_zip_without_data_pkl_throws_with_file_name()
    {
        var p = Path.Combine(_dir, "nopkl.bin");
        TorchZipBuilder.WriteZip(p, new[] { ("archive/version", Encoding.ASCII.GetBytes("3\n")) });
        var e = Assert.ThrowsAny<CheckpointFormatException>(() => TorchCheckpoint.Open(p).Dispose());
        Assert.Contains("data.pkl", e.Message);
        Assert.Contains(p, e.Message);
    }

    [Fact]
    public void Torch_tensor_reaching_past_its_storage_throws_naming_the_tensor()
    {
        var p = Path.Combine(_dir, "oob.bin");
        TorchZipBuilder.Write(p, new[]
        {
            new TorchZipBuilder.Tensor("ok", DType.F32, new long[] { 2 }, TorchZipBuilder.F32Bytes(1, 2), "s"),
            new TorchZipBuilder.Tensor("bad", DType.F32, new long[] { 2 }, TorchZipBuilder.F32Bytes(1, 2), "s", 1),
        });
        var e = Assert.ThrowsAny<CheckpointFormatException>(() => TorchCheckpoint.Open(p).Dispose());
        Assert.Equal("bad", e.TensorName);
        Assert.Contains(p, e.Message);
    }

    [Fact]
    public void Truncated_torch_zip_throws_with_file_name()
    {
        var src = Path.Combine(_dir, "good.bin");
        TorchZipBuilder.Write(src, new[] { new TorchZipBuilder.Tensor("w", DType.F32, new long[] { 64 }, new byte[256]) });
        var bytes = File.ReadAllBytes(src);
        var p = Path.Combine(_dir, "cut.bin");
        File.WriteAllBytes(p, bytes[..(bytes.Length / 2)]);
        var e = Assert.ThrowsAny<CheckpointFormatException>(() => TorchCheckpoint.Open(p).Dispose());
        Assert.Contains(p, e.Message);
    }

    private void CopyLlamaTiny(string dst)
    {
        Directory.CreateDirectory(dst);
        foreach (var f in Directory.GetFiles(SharedDir.Require("fixtures/llama-tiny")))
            File.Copy(f, Path.Combine(dst, Path.GetFileName(f)));
    }

    [SkippableFact]
    public void Missing_shard_throws_naming_index_tensor_and_shard()
    {
        var d = Path.Combine(_dir, "llama");
        CopyLlamaTiny(d);
        File.Delete(Path.Combine(d, "model-00002-of-00002.safetensors"));
        var e = Assert.ThrowsAny<CheckpointFormatException>(() => CheckpointLoader.OpenFolder(d).Dispose());
        Assert.Contains("model.safetensors.index.json", e.Message);
        Assert.Contains("model-00002-of-00002.safetensors", e.Message);
        Assert.NotNull(e.TensorName);
        Assert.Contains(e.TensorName!, e.Message);
    }

    [SkippableFact]
    public void Tensor_listed_in_index_but_absent_from_its_shard_throws()
    {
        var d = Path.Combine(_dir, "llama");
        CopyLlamaTiny(d);
        var idx = Path.Combine(d, "model.safetensors.index.json");
        var text = File.ReadAllText(idx).Replace("\"weight_map\": {", "\"weight_map\": {\n    \"model.layers.7.mlp.up_proj.weight\": \"model-00002-of-00002.safetensors\",");
        File.WriteAllText(idx, text);
        using var s = CheckpointLoader.OpenFolder(d);
        var e = Assert.ThrowsAny<CheckpointFormatException>(() => s.TryGetInfo("model.layers.7.mlp.up_proj.weight", out _));
        Assert.Contains("model.safetensors.index.json", e.Message);
        Assert.Contains("model.layers.7.mlp.up_proj.weight", e.Message);
        Assert.Contains("model-00002-of-00002.safetensors", e.Message);
    }

    [Fact]
    public void Folder_without_weights_lists_what_was_looked_for_and_found()
    {
        File.WriteAllText(Path.Combine(_dir, "config.json"), "{}");
        File.WriteAllText(Path.Combine(_dir, "weights.ckpt"), "x");
        var e = Assert.Throws<ModelFileNotFoundException>(() => CheckpointLoader.OpenFolder(_dir));
        Assert.Contains("pytorch_model.bin.index.json", e.Message);
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("weights.ckpt", e.Message);
    }
}

public sealed class CorruptionFuzzTests : IDisposable
{
    private readonly string _dir = SharedDir.TempDir("fuzz");

    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>Every truncation and many byte flips give a typed error (or a still-valid file), never a crash.</summary>
    private void Fuzz(byte[] good, Action<string> open)
    {
        var rng = new Random(1234);
        var p = Path.Combine(_dir, "f.bin");
        void Try(byte[] bytes)
        {
            File.WriteAllBytes(p, bytes);
            try { open(p); }
            catch (HubException) { }
        }
        for (int n = 0; n < good.Length; n += Math.Max(1, good.Length / 100)) Try(good[..n]);
        for (int k = 0; k < 150; k++)
        {
            var b = (byte[])good.Clone();
            int flips = 1 + rng.Next(3);
            for (int j = 0; j < flips; j++) b[rng.Next(b.Length)] = (byte)rng.Next(256);
            Try(b);
        }
    }

    [Fact]
    public void Corrupted_torch_checkpoints_only_ever_throw_typed_errors()
    {
        var src = Path.Combine(_dir, "good.bin");
        TorchZipBuilder.Write(src, new[]
        {
            new TorchZipBuilder.Tensor("a", DType.F32, new long[] { 4, 4 }, new byte[64], "s"),
            new TorchZipBuilder.Tensor("b", DType.F32, new long[] { 4, 4 }, new byte[64], "s", 0, new long[] { 1, 4 }),
        }, orderedDict: true);
        Fuzz(File.ReadAllBytes(src), p => { using var t = TorchCheckpoint.Open(p); foreach (var n in t.Names) t.OpenTensor(n).ToFloat32(); });
    }

    [Fact]
    public void Corrupted_safetensors_only_ever_throw_typed_errors()
    {
        var src = Path.Combine(_dir, "good.safetensors");
        SafetensorsWriter.Write(src, new Dictionary<string, SafetensorsTensor>
        {
            ["x"] = new(DType.F32, new Shape(2, 3), new byte[24]),
            ["y"] = new(DType.BF16, new Shape(5), new byte[10]),
        }, new Dictionary<string, string> { ["format"] = "pt" });
        Fuzz(File.ReadAllBytes(src), p => { using var s = SafetensorsFile.Open(p); foreach (var n in s.Names) s.OpenTensor(n).ToFloat32(); });
    }

    [SkippableFact]
    public void Corrupted_llama2c_headers_only_ever_throw_typed_errors()
    {
        var bin = File.ReadAllBytes(SharedDir.Require("models/karpathy/tinyllamas/stories260K/stories260K.bin"));
        var rng = new Random(7);
        var p = Path.Combine(_dir, "s.bin");
        for (int k = 0; k < 100; k++)
        {
            var b = (byte[])bin.Clone();
            b[rng.Next(28)] = (byte)rng.Next(256);
            File.WriteAllBytes(p, b);
            try { using var _ = Llama2cCheckpoint.Open(p).Weights; }
            catch (CheckpointFormatException e) { Assert.Contains(p, e.Message); }
        }
    }
}
