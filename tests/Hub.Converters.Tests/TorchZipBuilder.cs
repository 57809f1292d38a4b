using System.Buffers.Binary;
using System.Text;

namespace Hub.Converters.Tests;

/// <summary>
/// Writes torch.save-style zip checkpoints byte by byte for tests (protocol-2 pickle of a dict of
/// <c>_rebuild_tensor_v2</c> calls, one stored member per storage), and raw zips holding a hand-made data.pkl.
/// </summary>
internal static class TorchZipBuilder
{
    public sealed record Tensor(string Name, DType DType, long[] Shape, byte[] Data, string? StorageKey = null, long Offset = 0, long[]? Stride = null);

    private static string StorageClass(DType t) => t switch
    {
        DType.F32 => "FloatStorage", DType.F16 => "HalfStorage", DType.BF16 => "BFloat16Storage", DType.I64 => "LongStorage",
        DType.I32 => "IntStorage", DType.U8 => "ByteStorage", _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    /// <summary>Writes a checkpoint; tensors with the same StorageKey share one storage (the first one's bytes).</summary>
    public static void Write(string path, IEnumerable<Tensor> tensors, string folder = "archive", bool orderedDict = false, string? wrapKey = null,
        IReadOnlyDictionary<string, long>? extraInts = null)
    {
        var list = tensors.ToList();
        var storages = new Dictionary<string, byte[]>();
        var pkl = new List<byte> { 0x80, 2 };
        if (wrapKey is not null) { pkl.Add((byte)'}'); Str(pkl, wrapKey); }
        if (orderedDict) { Global(pkl, "collections", "OrderedDict"); pkl.Add((byte)')'); pkl.Add((byte)'R'); }
        else pkl.Add((byte)'}');
        pkl.Add((byte)'(');
        int i = 0;
        foreach (var t in list)
        {
            var key = t.StorageKey ?? (i++).ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (!storages.ContainsKey(key)) storages[key] = t.Data;
            long numel = storages[key].Length / t.DType.SizeOf();
            Str(pkl, t.Name);
            Global(pkl, "torch._utils", "_rebuild_tensor_v2");
            pkl.Add((byte)'(');
            pkl.Add((byte)'('); Str(pkl, "storage"); Global(pkl, "torch", StorageClass(t.DType)); Str(pkl, key); Str(pkl, "cpu"); Int(pkl, numel); pkl.Add((byte)'t');
            pkl.Add((byte)'Q');
            Int(pkl, t.Offset);
            pkl.Add((byte)'('); foreach (var d in t.Shape) Int(pkl, d); pkl.Add((byte)'t');
            var stride = t.Stride ?? RowMajor(t.Shape);
            pkl.Add((byte)'('); foreach (var d in stride) Int(pkl, d); pkl.Add((byte)'t');
            pkl.Add(0x89);
            Global(pkl, "collections", "OrderedDict"); pkl.Add((byte)')'); pkl.Add((byte)'R');
            pkl.Add((byte)'t');
            pkl.Add((byte)'R');
        }
        foreach (var (k, v) in extraInts ?? new Dictionary<string, long>()) { Str(pkl, k); Int(pkl, v); }
        pkl.Add((byte)'u');
        if (wrapKey is not null) pkl.Add((byte)'s');
        pkl.Add((byte)'.');

        var members = new List<(string, byte[])> { ($"{folder}/data.pkl", pkl.ToArray()) };
        foreach (var (k, v) in storages) members.Add(($"{folder}/data/{k}", v));
        members.Add(($"{folder}/version", Encoding.ASCII.GetBytes("3\n")));
        members.Add(($"{folder}/byteorder", Encoding.ASCII.GetBytes("little")));
        WriteZip(path, members);
    }

    public static long[] RowMajor(long[] shape)
    {
        var s = new long[shape.Length];
        long acc = 1;
        for (int i = shape.Length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
        return s;
    }

    public static void Str(List<byte> p, string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        p.Add((byte)'X');
        var len = new byte[4]; BinaryPrimitives.WriteInt32LittleEndian(len, b.Length);
        p.AddRange(len); p.AddRange(b);
    }

    public static void Global(List<byte> p, string module, string name)
    {
        p.Add((byte)'c');
        p.AddRange(Encoding.ASCII.GetBytes(module + "\n" + name + "\n"));
    }

    public static void Int(List<byte> p, long v)
    {
        p.Add((byte)'J');
        var b = new byte[4]; BinaryPrimitives.WriteInt32LittleEndian(b, checked((int)v));
        p.AddRange(b);
    }

    /// <summary>A stored (uncompressed) zip with 64-byte aligned member data, as torch writes it.</summary>
    public static void WriteZip(string path, IEnumerable<(string Name, byte[] Data)> members)
    {
        using var fs = new FileStream(path, FileMode.Create);
        var central = new MemoryStream();
        int count = 0;
        foreach (var (name, data) in members)
        {
            var nb = Encoding.UTF8.GetBytes(name);
            long local = fs.Position;
            int pad = (int)((64 - (local + 30 + nb.Length + 4) % 64) % 64);
            var extra = new byte[4 + pad];
            BinaryPrimitives.WriteUInt16LittleEndian(extra, 0x4446); // "FD" padding, like torch's writer
            BinaryPrimitives.WriteUInt16LittleEndian(extra.AsSpan(2), (ushort)pad);
            uint crc = Crc32(data);
            var h = new byte[30];
            BinaryPrimitives.WriteUInt32LittleEndian(h, 0x04034b50);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(4), 20);
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(14), crc);
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(18), (uint)data.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(22), (uint)data.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(26), (ushort)nb.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(28), (ushort)extra.Length);
            fs.Write(h); fs.Write(nb); fs.Write(extra); fs.Write(data);

            var c = new byte[46];
            BinaryPrimitives.WriteUInt32LittleEndian(c, 0x02014b50);
            BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(4), 20);
            BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(6), 20);
            BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(16), crc);
            BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(20), (uint)data.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(24), (uint)data.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(28), (ushort)nb.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(42), (uint)local);
            central.Write(c); central.Write(nb);
            count++;
        }
        long cdOffset = fs.Position;
        central.Position = 0; central.CopyTo(fs);
        var e = new byte[22];
        BinaryPrimitives.WriteUInt32LittleEndian(e, 0x06054b50);
        BinaryPrimitives.WriteUInt16LittleEndian(e.AsSpan(8), (ushort)count);
        BinaryPrimitives.WriteUInt16LittleEndian(e.AsSpan(10), (ushort)count);
        BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(12), (uint)central.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(16), (uint)cdOffset);
        fs.Write(e);
    }

    private static uint Crc32(byte[] data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (var b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
        }
        return ~crc;
    }

    public static byte[] F32Bytes(params float[] v) => System.Runtime.InteropServices.MemoryMarshal.AsBytes(v.AsSpan()).ToArray();
}
