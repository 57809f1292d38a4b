using System.Buffers.Binary;
using System.Text;

namespace Hub.Converters;

/// <summary>A global named by a pickle (module and qualified name), already checked against the allow-list.</summary>
internal sealed record PickleGlobal(string Module, string Name)
{
    public string FullName => $"{Module}.{Name}";
}

/// <summary>A dict or OrderedDict from a pickle, in insertion order.</summary>
internal sealed class PickleDict
{
    public List<KeyValuePair<object?, object?>> Items { get; } = new();
    public bool Ordered { get; init; }

    private readonly Dictionary<object, int> _index = new();

    public void Set(object? key, object? value)
    {
        if (key is not null && _index.TryGetValue(key, out var i)) { Items[i] = new(key, value); return; }
        if (key is not null) _index[key] = Items.Count;
        Items.Add(new(key, value));
    }
}

/// <summary>A torch storage reference from a persistent id: element type, archive key and element count.</summary>
internal sealed record TorchStorageRef(DType DType, string Key, long Numel, string StorageClass);

/// <summary>A tensor as <c>_rebuild_tensor_v2</c> describes it: a strided window of a storage.</summary>
internal sealed record TorchTensorRef(TorchStorageRef Storage, long Offset, long[] Size, long[] Stride);

/// <summary>
/// An interpreter for the subset of the pickle protocol (2–5) that torch state dicts use. It never imports or calls
/// anything: globals are data, checked against a short allow-list (torch's tensor-rebuild functions, typed storage
/// classes and <c>collections.OrderedDict</c>) at the moment GLOBAL/STACK_GLOBAL is read, so a hostile pickle is
/// rejected before any REDUCE could apply it. Object-creating opcodes (NEWOBJ, INST, OBJ) are refused outright.
/// </summary>
internal sealed class RestrictedUnpickler
{
    private static readonly Dictionary<string, DType> StorageTypes = new(StringComparer.Ordinal)
    {
        ["FloatStorage"] = DType.F32, ["HalfStorage"] = DType.F16, ["BFloat16Storage"] = DType.BF16,
        ["DoubleStorage"] = DType.F64, ["LongStorage"] = DType.I64, ["IntStorage"] = DType.I32,
        ["ShortStorage"] = DType.I16, ["CharStorage"] = DType.I8, ["ByteStorage"] = DType.U8, ["BoolStorage"] = DType.Bool,
    };

    private static readonly HashSet<string> AllowedFunctions = new(StringComparer.Ordinal)
    {
        "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor", "torch._utils._rebuild_parameter",
        "collections.OrderedDict",
    };

    private static readonly object Mark = new();

    private readonly byte[] _data;
    private readonly string _file;
    private int _pos;
    private readonly List<object?> _stack = new();
    private readonly List<int> _marks = new();
    private readonly Dictionary<long, object?> _memo = new();

    private RestrictedUnpickler(byte[] data, string file) { _data = data; _file = file; }

    /// <summary>Interprets <paramref name="pickle"/>; <paramref name="file"/> names it in errors.</summary>
    public static object? Load(byte[] pickle, string file)
    {
        var u = new RestrictedUnpickler(pickle, file);
        try { return u.Run(); }
        catch (Exception e) when (e is OverflowException or ArgumentException or FormatException or InvalidCastException)
        {
            throw new CheckpointFormatException(file, null, $"pickle is corrupt at byte {u._pos}: {e.Message}", e);
        }
    }

    /// <summary>True when <c>module.name</c> may appear in a checkpoint.</summary>
    public static bool IsAllowed(string module, string name) =>
        AllowedFunctions.Contains($"{module}.{name}") || (module == "torch" && StorageTypes.ContainsKey(name));

    private CheckpointFormatException Corrupt(string what) =>
        new(_file, null, $"pickle is corrupt or unsupported at byte {_pos}: {what}");

    private object? Run()
    {
        while (true)
        {
            if (_pos >= _data.Length) throw Corrupt("ended without STOP (the file is truncated)");
            byte op = _data[_pos++];
            switch (op)
            {
                case 0x80: ReadByte(); break;                            // PROTO
                case 0x95: ReadBytes(8); break;                          // FRAME: framing is transparent here
                case (byte)'.': return _stack.Count == 1 ? _stack[0] : throw Corrupt($"STOP with {_stack.Count} items on the stack");
                case (byte)'}': Push(new PickleDict()); break;           // EMPTY_DICT
                case (byte)']': Push(new List<object?>()); break;        // EMPTY_LIST
                case (byte)')': Push(Array.Empty<object?>()); break;     // EMPTY_TUPLE
                case 0x8f: Push(new List<object?>()); break;             // EMPTY_SET (kept as a list)
                case (byte)'(': _marks.Add(_stack.Count); Push(Mark); break; // MARK
                case (byte)'N': Push(null); break;
                case 0x88: Push(true); break;                            // NEWTRUE
                case 0x89: Push(false); break;                           // NEWFALSE
                case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(ReadBytes(4))); break;  // BININT
                case (byte)'K': Push((long)ReadByte()); break;                                          // BININT1
                case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(ReadBytes(2))); break; // BININT2
                case 0x8a: Push(ReadLong(ReadByte())); break;                                           // LONG1
                case 0x8b: Push(ReadLong(checked((int)BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4))))); break; // LONG4
                case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(ReadBytes(8))); break;        // BINFLOAT
                case (byte)'X': Push(Utf8(ReadBytes(checked((int)BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4)))))); break; // BINUNICODE
                case 0x8c: Push(Utf8(ReadBytes(ReadByte()))); break;                                     // SHORT_BINUNICODE
                case 0x8d: Push(Utf8(ReadBytes(checked((int)BinaryPrimitives.ReadUInt64LittleEndian(ReadBytes(8)))))); break; // BINUNICODE8
                case (byte)'U': Push(Latin1(ReadBytes(ReadByte()))); break;                             // SHORT_BINSTRING
                case (byte)'T': Push(Latin1(ReadBytes(checked((int)BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4)))))); break; // BINSTRING
                case (byte)'C': Push(ReadBytes(ReadByte()).ToArray()); break;                           // SHORT_BINBYTES
                case (byte)'B': Push(ReadBytes(checked((int)BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4)))).ToArray()); break; // BINBYTES
                case (byte)'t': Push(PopMark().ToArray()); break;                                        // TUPLE
                case 0x85: { var a = Pop(); Push(new[] { a }); break; }                                  // TUPLE1
                case 0x86: { var b = Pop(); var a = Pop(); Push(new[] { a, b }); break; }                // TUPLE2
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new[] { a, b, c }); break; } // TUPLE3
                case (byte)'l': Push(PopMark()); break;                                                  // LIST
                case (byte)'d': { var items = PopMark(); var d = new PickleDict(); for (int i = 0; i + 1 < items.Count; i += 2) d.Set(items[i], items[i + 1]); Push(d); break; } // DICT
                case (byte)'a': { var v = Pop(); AsList(Peek()).Add(v); break; }                         // APPEND
                case (byte)'e': { var items = PopMark(); AsList(Peek()).AddRange(items); break; }        // APPENDS
                case 0x90: { var items = PopMark(); AsList(Peek()).AddRange(items); break; }             // ADDITEMS
                case (byte)'s': { var v = Pop(); var k = Pop(); AsDict(Peek()).Set(k, v); break; }       // SETITEM
                case (byte)'u':                                                                          // SETITEMS
                    {
                        var items = PopMark();
                        if (items.Count % 2 != 0) throw Corrupt("SETITEMS with an odd number of items");
                        var d = AsDict(Peek());
                        for (int i = 0; i < items.Count; i += 2) d.Set(items[i], items[i + 1]);
                        break;
                    }
                case (byte)'0': Pop(); break;                            // POP
                case (byte)'1': PopMark(); break;                        // POP_MARK
                case (byte)'2': Push(Peek()); break;                     // DUP
                case (byte)'q': _memo[ReadByte()] = Peek(); break;       // BINPUT
                case (byte)'r': _memo[BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4))] = Peek(); break; // LONG_BINPUT
                case 0x94: _memo[_memo.Count] = Peek(); break;           // MEMOIZE
                case (byte)'p': _memo[long.Parse(ReadLine(), System.Globalization.CultureInfo.InvariantCulture)] = Peek(); break; // PUT
                case (byte)'h': Push(MemoGet(ReadByte())); break;        // BINGET
                case (byte)'j': Push(MemoGet(BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4)))); break; // LONG_BINGET
                case (byte)'g': Push(MemoGet(long.Parse(ReadLine(), System.Globalization.CultureInfo.InvariantCulture))); break; // GET
                case (byte)'c':                                          // GLOBAL "module\nname\n"
                    {
                        var module = ReadLine();
                        var name = ReadLine();
                        Push(CheckGlobal(module, name));
                        break;
                    }
                case 0x93:                                               // STACK_GLOBAL
                    {
                        var name = Pop() as string ?? throw Corrupt("STACK_GLOBAL name is not a string");
                        var module = Pop() as string ?? throw Corrupt("STACK_GLOBAL module is not a string");
                        Push(CheckGlobal(module, name));
                        break;
                    }
                case (byte)'Q': Push(PersistentLoad(Pop())); break;      // BINPERSID
                case (byte)'R':                                          // REDUCE
                    {
                        var args = Pop() as object?[] ?? throw Corrupt("REDUCE arguments are not a tuple");
                        var fn = Pop() as PickleGlobal ?? throw Corrupt("REDUCE applied to something that is not an allowed global");
                        Push(Reduce(fn, args));
                        break;
                    }
                case (byte)'b': Pop(); break;                            // BUILD: state of an OrderedDict/tensor (e.g. _metadata) is not needed
                case 0x81: case 0x92: case (byte)'i': case (byte)'o':    // NEWOBJ, NEWOBJ_EX, INST, OBJ
                    throw new CheckpointFormatException(_file, null, $"pickle instantiates a class (opcode 0x{op:x2} at byte {_pos - 1}); checkpoints hold only tensors and containers, so the file was rejected without running anything");
                default:
                    throw Corrupt($"opcode 0x{op:x2} is not supported in checkpoints");
            }
        }
    }

    private PickleGlobal CheckGlobal(string module, string name)
    {
        if (!IsAllowed(module, name)) throw new UnsafePickleException(_file, $"{module}.{name}");
        return new PickleGlobal(module, name);
    }

    private object PersistentLoad(object? pid)
    {
        // ('storage', <storage class>, key, location, numel)
        if (pid is not object?[] t || t.Length < 5 || t[0] is not string kind || kind != "storage")
            throw Corrupt("persistent id is not a torch ('storage', type, key, location, numel) tuple");
        if (t[1] is not PickleGlobal g || g.Module != "torch" || !StorageTypes.TryGetValue(g.Name, out var dtype))
            throw Corrupt($"persistent id names storage type {t[1]}, not a torch typed storage");
        var key = t[2] switch { string s => s, long l => l.ToString(System.Globalization.CultureInfo.InvariantCulture), _ => throw Corrupt("storage key is not a string") };
        if (t[4] is not long numel || numel < 0) throw Corrupt("storage element count is not a non-negative integer");
        return new TorchStorageRef(dtype, key, numel, g.Name);
    }

    private object? Reduce(PickleGlobal fn, object?[] args)
    {
        switch (fn.FullName)
        {
            case "collections.OrderedDict":
                {
                    var d = new PickleDict { Ordered = true };
                    if (args.Length >= 1 && args[0] is List<object?> pairs)
                        foreach (var p in pairs)
                            if (p is object?[] { Length: 2 } kv) d.Set(kv[0], kv[1]);
                    return d;
                }
            case "torch._utils._rebuild_tensor_v2":
            case "torch._utils._rebuild_tensor":
                {
                    if (args.Length < 4 || args[0] is not TorchStorageRef st || args[1] is not long offset)
                        throw Corrupt($"{fn.FullName} called with unexpected arguments");
                    return new TorchTensorRef(st, offset, Longs(args[2], "size"), Longs(args[3], "stride"));
                }
            case "torch._utils._rebuild_parameter":
                if (args.Length < 1 || args[0] is not TorchTensorRef tensor) throw Corrupt("_rebuild_parameter without a tensor");
                return tensor;
            default:
                throw Corrupt($"{fn.FullName} cannot be called");
        }
    }

    private long[] Longs(object? o, string what)
    {
        if (o is not object?[] t) throw Corrupt($"tensor {what} is not a tuple");
        var r = new long[t.Length];
        for (int i = 0; i < t.Length; i++) r[i] = t[i] is long l ? l : throw Corrupt($"tensor {what} holds a non-integer");
        return r;
    }

    private void Push(object? o) => _stack.Add(o);

    private object? Pop()
    {
        if (_stack.Count == 0) throw Corrupt("stack underflow");
        var o = _stack[^1];
        if (ReferenceEquals(o, Mark)) throw Corrupt("unexpected MARK");
        _stack.RemoveAt(_stack.Count - 1);
        return o;
    }

    private object? Peek() => _stack.Count == 0 ? throw Corrupt("stack underflow") : _stack[^1];

    private List<object?> PopMark()
    {
        if (_marks.Count == 0) throw Corrupt("no MARK");
        int m = _marks[^1];
        _marks.RemoveAt(_marks.Count - 1);
        var items = _stack.GetRange(m + 1, _stack.Count - m - 1);
        _stack.RemoveRange(m, _stack.Count - m);
        return items;
    }

    private object? MemoGet(long key) => _memo.TryGetValue(key, out var v) ? v : throw Corrupt($"memo key {key} not set");

    private List<object?> AsList(object? o) => o as List<object?> ?? throw Corrupt("APPEND to something that is not a list");
    private PickleDict AsDict(object? o) => o as PickleDict ?? throw Corrupt("SETITEM on something that is not a dict");

    private byte ReadByte() => _pos < _data.Length ? _data[_pos++] : throw Corrupt("unexpected end of data");

    private ReadOnlySpan<byte> ReadBytes(int n)
    {
        if (n < 0 || _pos + n > _data.Length) throw Corrupt("unexpected end of data");
        var s = _data.AsSpan(_pos, n);
        _pos += n;
        return s;
    }

    private string ReadLine()
    {
        int nl = Array.IndexOf(_data, (byte)'\n', _pos);
        if (nl < 0) throw Corrupt("unterminated line");
        var s = Encoding.UTF8.GetString(_data, _pos, nl - _pos);
        _pos = nl + 1;
        return s;
    }

    private long ReadLong(int n)
    {
        var b = ReadBytes(n);
        if (n == 0) return 0;
        if (n > 8) throw Corrupt($"integer of {n} bytes is too large");
        long v = 0;
        for (int i = n - 1; i >= 0; i--) v = (v << 8) | b[i];
        if (n < 8 && (b[n - 1] & 0x80) != 0) v -= 1L << (8 * n); // two's complement sign
        return v;
    }

    private static string Utf8(ReadOnlySpan<byte> b) => Encoding.UTF8.GetString(b);
    private static string Latin1(ReadOnlySpan<byte> b) => Encoding.Latin1.GetString(b);
}
