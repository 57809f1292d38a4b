using System.Buffers.Binary;
using System.Text;
using Hub.Converters.Formats;
using Hub.Tests;

namespace Hub.Converters.Tests;

/// <summary>Every malformed GGUF header is a <see cref="CheckpointFormatException"/> naming the file and the field.</summary>
public sealed class GgufReaderRobustnessTests : IDisposable
{
    private readonly string _dir = SharedDir.TempDir("gguf-bad");

    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>A small real GGUF: every metadata kind the writer has and one tensor of each type.</summary>
    private byte[] SmallGguf()
    {
        var w = new GgufWriter();
        w.Add("general.architecture", "llama");
        w.Add("llama.block_count", 2u);
        w.Add("x.i32", -3);
        w.Add("x.u64", 7UL);
        w.Add("x.f", 0.5f);
        w.Add("x.d", 0.25);
        w.Add("x.b", true);
        w.Add("x.s", new[] { "a", "▁bc", "" });
        w.Add("x.ia", new[] { 1, -2, 3 });
        w.Add("x.fa", new[] { 0.5f, 1.5f });
        var v = Enumerable.Range(0, 64).Select(i => (float)Math.Cos(i)).ToArray();
        w.AddTensor("t.f32", GgmlType.F32, [3], s => Encode(s, GgmlType.F32, [1f, 2f, 3f]));
        w.AddTensor("t.f16", GgmlType.F16, [2, 2], s => Encode(s, GgmlType.F16, [1f, 2f, 3f, 4f]));
        w.AddTensor("t.q8", GgmlType.Q8_0, [32, 2], s => Encode(s, GgmlType.Q8_0, v));
        w.AddTensor("t.q4", GgmlType.Q4_0, [32, 1, 1, 2], s => Encode(s, GgmlType.Q4_0, v));
        var p = Path.Combine(_dir, "small.gguf");
        w.Write(p);
        return File.ReadAllBytes(p);
    }

    private static void Encode(Stream s, GgmlType t, float[] x)
    {
        var b = new byte[t.RowBytes(x.Length)];
        GgufQuant.Encode(t, x, b);
        s.Write(b);
    }

    private string Save(byte[] bytes, string name = "bad.gguf")
    {
        var p = Path.Combine(_dir, name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    /// <summary>Index just past the first occurrence of <paramref name="text"/>'s UTF-8 bytes.</summary>
    private static int After(byte[] file, string text)
    {
        var t = Encoding.UTF8.GetBytes(text);
        int i = file.AsSpan().IndexOf(t);
        Assert.True(i >= 0, $"'{text}' not in the file");
        return i + t.Length;
    }

    private static CheckpointFormatException Throws(string path, params string[] mentions)
    {
        var e = Assert.ThrowsAny<CheckpointFormatException>(() => GgufReader.Open(path));
        Assert.Equal(path, e.FilePath);
        Assert.Contains(path, e.Message);
        foreach (var m in mentions) Assert.Contains(m, e.Message);
        return e;
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(48u)]
    [InlineData(0x8000_0000u)]
    public void Alignment_zero_or_not_a_power_of_two_throws_naming_the_field(uint align)
    {
        var f = SmallGguf();
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(After(f, "general.alignment") + 4), align);
        Throws(Save(f), "general.alignment", "power of two");
    }

    [Fact]
    public void Dimension_past_int_range_throws_naming_the_tensor_and_dim()
    {
        var f = SmallGguf();
        int nd = After(f, "t.q8");
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(nd + 4 + 8), ulong.MaxValue);
        Throws(Save(f), "t.q8", "ne[1]");
    }

    [Fact]
    public void Dimensions_whose_product_overflows_throw_naming_the_tensor()
    {
        var f = SmallGguf();
        int nd = After(f, "t.q4");
        for (int d = 1; d < 4; d++) BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(nd + 4 + 8 * d), int.MaxValue);
        Throws(Save(f), "t.q4");
    }

    [Fact]
    public void Offset_past_the_file_throws_naming_the_tensor_offset()
    {
        var f = SmallGguf();
        int off = After(f, "t.f32") + 4 + 8 + 4;
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(off), ulong.MaxValue - 5);
        Throws(Save(f), "t.f32", "offset");
    }

    [Fact]
    public void Tensor_count_larger_than_the_file_throws_before_allocating()
    {
        var f = SmallGguf();
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(8), 900_000);
        Throws(Save(f), "tensor_count");
    }

    [Fact]
    public void Truncated_string_value_throws_naming_the_key()
    {
        var f = SmallGguf();
        var p = Save(f.AsSpan(0, After(f, "▁bc") - 2).ToArray());
        Throws(p, "x.s", "truncated");
    }

    [Fact]
    public void String_length_past_the_file_throws_naming_the_key()
    {
        var f = SmallGguf();
        // general.architecture: key, type u32, then the value's u64 length.
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(After(f, "general.architecture") + 4), 1UL << 40);
        Throws(Save(f), "general.architecture", "string of");
    }

    [Fact]
    public void Array_count_past_the_file_throws_naming_the_key()
    {
        var f = SmallGguf();
        // x.ia: key, type (array), element type, then the u64 count.
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(After(f, "x.ia") + 4 + 4), 1UL << 40);
        Throws(Save(f), "x.ia", "array elements");
    }

    [Fact]
    public void Nested_array_throws_naming_the_key()
    {
        var f = SmallGguf();
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(After(f, "x.fa") + 4), (uint)GgufValueType.Array);
        Throws(Save(f), "x.fa", "arrays of arrays");
    }

    [Fact]
    public void Intact_file_reads_back()
    {
        var r = GgufReader.Open(Save(SmallGguf(), "ok.gguf"));
        Assert.Equal(new[] { 1f, 2f, 3f }, r.ReadF32("t.f32"));
        Assert.Equal(new[] { 1f, 2f, 3f, 4f }, r.ReadF32("t.f16"));
        Assert.Equal(new[] { "a", "▁bc", "" }, (string[])r.Metadata["x.s"]);
        Assert.Equal(64, r.ReadF32("t.q4").Length);
    }

    [Fact]
    public void Truncating_or_corrupting_at_any_offset_only_raises_CheckpointFormatException()
    {
        var good = SmallGguf();
        var failures = new List<string>();
        void Check(byte[] bytes, string what)
        {
            var p = Save(bytes, "fuzz.gguf");
            try
            {
                var r = GgufReader.Open(p);
                foreach (var t in r.Tensors) r.ReadF32(t.Name);
            }
            catch (CheckpointFormatException e) when (e.FilePath == p && e.Message.Contains(p, StringComparison.Ordinal)) { }
            catch (Exception e) { failures.Add($"{what}: {e.GetType().Name}: {e.Message}"); }
        }

        int lastData = GgufReader.Open(Save(good, "ok.gguf")).Tensors.Max(t => (int)(t.Offset + t.Bytes));
        for (int n = 0; n < good.Length; n++)
        {
            var cut = good.AsSpan(0, n).ToArray();
            if (n < lastData)
            {
                var p = Save(cut, "cut.gguf");
                var e = Record.Exception(() => GgufReader.Open(p));
                if (e is not CheckpointFormatException) failures.Add($"truncated to {n} bytes: {(e is null ? "no error" : e.GetType().Name + ": " + e.Message)}");
            }
            else Check(cut, $"truncated to {n} bytes");
        }
        byte[] values = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0x09, 0x20];
        for (int i = 0; i < lastData; i++)
        {
            foreach (var v in values.Append((byte)(good[i] ^ 0x10)))
            {
                if (good[i] == v) continue;
                var bad = (byte[])good.Clone();
                bad[i] = v;
                Check(bad, $"byte {i} set to 0x{v:X2}");
            }
        }
        var rng = new Random(1234);
        for (int k = 0; k < 400; k++)
        {
            var bad = (byte[])good.Clone();
            for (int j = rng.Next(2, 9); j > 0; j--) bad[rng.Next(bad.Length)] = (byte)rng.Next(256);
            Check(bad, $"random corruption #{k}");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} inputs raised something else:\n{string.Join("\n", failures.Take(20))}");
    }
}
