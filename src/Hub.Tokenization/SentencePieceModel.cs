using System.Text;

namespace Hub.Tokenization;

/// <summary>Type of a SentencePiece vocabulary entry (sentencepiece_model.proto).</summary>
public enum PieceType
{
    /// <summary>Ordinary piece.</summary>
    Normal = 1,
    /// <summary>The unknown piece.</summary>
    Unknown = 2,
    /// <summary>Control symbol (&lt;s&gt;, &lt;/s&gt;): never produced from text, decodes to nothing.</summary>
    Control = 3,
    /// <summary>User-defined symbol: matched literally in text.</summary>
    UserDefined = 4,
    /// <summary>Unused piece: never produced by merges.</summary>
    Unused = 5,
    /// <summary>Byte-fallback piece <c>&lt;0xHH&gt;</c>.</summary>
    Byte = 6,
}

/// <summary>
/// A SentencePiece BPE model read from its protobuf (<c>tokenizer.model</c>) and encoded exactly as sentencepiece's
/// <c>bpe_model.cc</c>: whitespace escaped to <c>▁</c>, one dummy-prefix <c>▁</c>, code-point symbols, repeatedly merge the
/// adjacent pair whose concatenation is the highest-scoring piece (leftmost on ties), unknown symbols to UTF-8 byte
/// pieces (byte_fallback). Decoding turns <c>▁</c> back into spaces and drops the first piece's dummy-prefix space.
/// </summary>
public sealed class SentencePieceModel
{
    private const char Ws = '\u2581';
    private readonly string[] _pieces;
    private readonly float[] _scores;
    private readonly PieceType[] _types;
    private readonly Dictionary<string, int> _mergeable = new(StringComparer.Ordinal);  // normal + user-defined
    private readonly Dictionary<string, int> _all = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _mergeLookup;
    private readonly int[] _byteIds = Enumerable.Repeat(-1, 256).ToArray();
    private readonly int[] _byteOf;
    private readonly Dictionary<char, string[]> _userDefined = new();

    /// <summary>The file it came from.</summary>
    public string Source { get; }
    /// <summary>1 = Unigram, 2 = BPE (trainer_spec.model_type).</summary>
    public int ModelType { get; }
    /// <summary>trainer_spec.byte_fallback.</summary>
    public bool ByteFallback { get; }
    /// <summary>normalizer_spec.add_dummy_prefix.</summary>
    public bool AddDummyPrefix { get; }
    /// <summary>normalizer_spec.remove_extra_whitespaces.</summary>
    public bool RemoveExtraWhitespaces { get; }
    /// <summary>normalizer_spec.escape_whitespaces.</summary>
    public bool EscapeWhitespaces { get; }
    /// <summary>normalizer_spec.name (e.g. identity).</summary>
    public string NormalizerName { get; }
    /// <summary>Id of the unknown piece.</summary>
    public int UnkId { get; }
    /// <summary>Id of &lt;s&gt; (-1 if absent).</summary>
    public int BosId { get; }
    /// <summary>Id of &lt;/s&gt; (-1 if absent).</summary>
    public int EosId { get; }

    /// <summary>Number of pieces.</summary>
    public int Count => _pieces.Length;

    private SentencePieceModel(string source, List<(string Piece, float Score, PieceType Type)> pieces, int modelType, bool byteFallback,
        bool addDummyPrefix, bool removeExtra, bool escape, string normName, bool hasCharsMap)
    {
        Source = source;
        ModelType = modelType;
        ByteFallback = byteFallback;
        AddDummyPrefix = addDummyPrefix;
        RemoveExtraWhitespaces = removeExtra;
        EscapeWhitespaces = escape;
        NormalizerName = normName;
        if (modelType != 2)
            throw new TokenizerException($"{source}: SentencePiece model_type {modelType} ({(modelType == 1 ? "Unigram" : "other")}) is not supported; only BPE models (LLaMA, ChatGLM) are");
        if (hasCharsMap && normName != "identity")
            throw new TokenizerException($"{source}: SentencePiece normalizer '{normName}' with a precompiled character map is not supported; only 'identity' (LLaMA, ChatGLM) is");
        _pieces = pieces.Select(p => p.Piece).ToArray();
        _scores = pieces.Select(p => p.Score).ToArray();
        _types = pieces.Select(p => p.Type).ToArray();
        _byteOf = new int[_pieces.Length];
        UnkId = BosId = EosId = -1;
        var ud = new List<string>();
        for (int i = 0; i < _pieces.Length; i++)
        {
            _byteOf[i] = -1;
            var p = _pieces[i];
            _all.TryAdd(p, i);
            switch (_types[i])
            {
                case PieceType.Normal: _mergeable.TryAdd(p, i); break;
                case PieceType.UserDefined: _mergeable.TryAdd(p, i); ud.Add(p); break;
                case PieceType.Unknown: if (UnkId < 0) UnkId = i; break;
                case PieceType.Byte:
                    if (p.Length == 6 && p.StartsWith("<0x", StringComparison.Ordinal) && p[5] == '>' && int.TryParse(p.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out var b))
                    { _byteIds[b] = i; _byteOf[i] = b; }
                    break;
            }
        }
        foreach (var g in ud.GroupBy(s => s[0])) _userDefined[g.Key] = g.OrderByDescending(s => s.Length).ToArray();
        BosId = _all.TryGetValue("<s>", out var bos) ? bos : -1;
        EosId = _all.TryGetValue("</s>", out var eos) ? eos : -1;
        if (UnkId < 0) throw new TokenizerException($"{source}: the SentencePiece model has no unknown piece");
        _mergeLookup = _mergeable.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>Reads a SentencePiece <c>.model</c> protobuf.</summary>
    public static SentencePieceModel Load(string path)
    {
        if (!File.Exists(path)) throw new ModelFileNotFoundException(path, "the SentencePiece model (tokenizer.model) is required");
        var data = File.ReadAllBytes(path);
        try { return Parse(data, path); }
        catch (Exception e) when (e is IndexOutOfRangeException or ArgumentOutOfRangeException or InvalidDataException or DecoderFallbackException)
        {
            throw new TokenizerException($"{path}: not a valid SentencePiece model protobuf ({e.Message}); re-download tokenizer.model", e);
        }
    }

    private static SentencePieceModel Parse(byte[] d, string path)
    {
        var pieces = new List<(string, float, PieceType)>();
        int modelType = 1; bool byteFallback = false;
        bool addDummy = true, removeExtra = true, escape = true; string normName = ""; bool hasMap = false;
        var r = new Proto(d, 0, d.Length);
        while (r.More)
        {
            var (field, wire) = r.Key();
            if (field == 1 && wire == 2)
            {
                var m = r.Sub();
                string piece = ""; float score = 0; var type = PieceType.Normal;
                while (m.More)
                {
                    var (f, w) = m.Key();
                    if (f == 1 && w == 2) piece = m.String();
                    else if (f == 2 && w == 5) score = m.Fixed32Float();
                    else if (f == 3 && w == 0) type = (PieceType)(int)m.Varint();
                    else m.Skip(w);
                }
                pieces.Add((piece, score, type));
            }
            else if (field == 2 && wire == 2)
            {
                var m = r.Sub();
                while (m.More)
                {
                    var (f, w) = m.Key();
                    if (f == 3 && w == 0) modelType = (int)m.Varint();
                    else if (f == 35 && w == 0) byteFallback = m.Varint() != 0;
                    else m.Skip(w);
                }
            }
            else if (field == 3 && wire == 2)
            {
                var m = r.Sub();
                while (m.More)
                {
                    var (f, w) = m.Key();
                    if (f == 1 && w == 2) normName = m.String();
                    else if (f == 2 && w == 2) hasMap = m.Sub().Length > 0;
                    else if (f == 3 && w == 0) addDummy = m.Varint() != 0;
                    else if (f == 4 && w == 0) removeExtra = m.Varint() != 0;
                    else if (f == 5 && w == 0) escape = m.Varint() != 0;
                    else m.Skip(w);
                }
            }
            else r.Skip(wire);
        }
        if (pieces.Count == 0) throw new TokenizerException($"{path}: the SentencePiece model holds no pieces (is it a SentencePiece .model file?)");
        return new SentencePieceModel(path, pieces, modelType, byteFallback, addDummy, removeExtra, escape, normName, hasMap);
    }

    /// <summary>The piece string of <paramref name="id"/>.</summary>
    public string Piece(int id) => _pieces[id];
    /// <summary>The type of <paramref name="id"/>.</summary>
    public PieceType Type(int id) => _types[id];
    /// <summary>The score of <paramref name="id"/>.</summary>
    public float Score(int id) => _scores[id];
    /// <summary>The id of a piece string, or null.</summary>
    public int? PieceToId(string piece) => _all.TryGetValue(piece, out var id) ? id : null;

    /// <summary>Applies the normalizer (identity + whitespace rules): what the BPE sees.</summary>
    public string Normalize(string text)
    {
        if (RemoveExtraWhitespaces)
        {
            var sb = new StringBuilder(text.Length);
            bool prevSpace = true;
            foreach (var c in text)
            {
                if (c == ' ') { if (!prevSpace) sb.Append(' '); prevSpace = true; }
                else { sb.Append(c); prevSpace = false; }
            }
            while (sb.Length > 0 && sb[^1] == ' ') sb.Length--;
            text = sb.ToString();
        }
        if (text.Length == 0) return text;
        if (EscapeWhitespaces) text = text.Replace(' ', Ws);
        return AddDummyPrefix ? (EscapeWhitespaces ? Ws : ' ') + text : text;
    }

    private struct Symbol { public int Start, Len, Prev, Next; }

    /// <summary>Encodes <paramref name="text"/> to piece ids (no BOS/EOS).</summary>
    public List<int> Encode(string text)
    {
        var ids = new List<int>();
        var norm = Normalize(text);
        if (norm.Length == 0) return ids;
        var sym = new List<Symbol>(norm.Length);
        for (int i = 0; i < norm.Length;)
        {
            int len = char.IsHighSurrogate(norm[i]) && i + 1 < norm.Length && char.IsLowSurrogate(norm[i + 1]) ? 2 : 1;
            if (_userDefined.TryGetValue(norm[i], out var uds))
                foreach (var u in uds)
                    if (string.CompareOrdinal(norm, i, u, 0, u.Length) == 0 && i + u.Length <= norm.Length) { len = u.Length; break; }
            sym.Add(new Symbol { Start = i, Len = len, Prev = sym.Count - 1, Next = sym.Count + 1 });
            i += len;
        }
        var s = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(sym);
        s[^1].Next = -1;
        var agenda = new PriorityQueue<(int Left, int Right, int Len), (float NegScore, int Left)>();
        void TryAdd(List<Symbol> syms, int left, int right)
        {
            if (left < 0 || right < 0) return;
            var a = syms[left]; var b = syms[right];
            if (_mergeLookup.TryGetValue(norm.AsSpan(a.Start, a.Len + b.Len), out var id))
                agenda.Enqueue((left, right, a.Len + b.Len), (-_scores[id], left));
        }
        for (int i = 1; i < sym.Count; i++) TryAdd(sym, i - 1, i);
        while (agenda.TryDequeue(out var top, out _))
        {
            s = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(sym);
            ref var l = ref s[top.Left];
            ref var r = ref s[top.Right];
            if (l.Len == 0 || r.Len == 0 || l.Len + r.Len != top.Len) continue;
            l.Len += r.Len;
            r.Len = 0;
            l.Next = r.Next;
            if (r.Next >= 0) s[r.Next].Prev = top.Left;
            TryAdd(sym, l.Prev, top.Left);
            TryAdd(sym, top.Left, l.Next);
        }
        bool prevUnk = false;
        Span<byte> buf = stackalloc byte[16];
        for (int i = 0; i >= 0 && i < sym.Count; i = sym[i].Next)
        {
            var piece = norm.AsSpan(sym[i].Start, sym[i].Len);
            if (_mergeLookup.TryGetValue(piece, out var id)) { ids.Add(id); prevUnk = false; continue; }
            if (ByteFallback)
            {
                int n = Encoding.UTF8.GetBytes(piece, buf);
                bool all = true;
                for (int k = 0; k < n; k++) all &= _byteIds[buf[k]] >= 0;
                if (all) { for (int k = 0; k < n; k++) ids.Add(_byteIds[buf[k]]); prevUnk = false; continue; }
            }
            if (!prevUnk) ids.Add(UnkId);   // sentencepiece merges a run of unknown symbols into one <unk>
            prevUnk = true;
        }
        return ids;
    }

    /// <summary>The piece strings of <paramref name="text"/> (as sentencepiece's <c>encode(out_type=str)</c>).</summary>
    public string[] EncodeToPieces(string text) => Encode(text).Select(i => _pieces[i]).ToArray();

    /// <summary>
    /// sentencepiece's decode of ordinary ids: <c>▁</c> → space, byte pieces assembled into UTF-8, control pieces dropped,
    /// unknown as <c> ⁇ </c>, and the dummy-prefix space of the first piece removed when <paramref name="stripLeadingSpace"/>.
    /// </summary>
    public void DecodeTo(ReadOnlySpan<int> ids, StringBuilder sb, ref bool stripLeadingSpace, List<byte> pendingBytes)
    {
        foreach (var id in ids)
        {
            if ((uint)id >= (uint)_pieces.Length) throw new ModelInputException($"token id {id} is outside the SentencePiece vocabulary (size {_pieces.Length}) of {Source}");
            switch (_types[id])
            {
                case PieceType.Control: continue;
                case PieceType.Byte when _byteOf[id] >= 0:
                    pendingBytes.Add((byte)_byteOf[id]);
                    stripLeadingSpace = false;
                    continue;
            }
            FlushBytes(pendingBytes, sb);
            var p = _types[id] == PieceType.Unknown ? " \u2047 " : _pieces[id];
            if (EscapeWhitespaces) p = p.Replace(Ws, ' ');
            if (stripLeadingSpace && AddDummyPrefix && p.Length > 0 && p[0] == ' ') p = p[1..];
            stripLeadingSpace = false;
            sb.Append(p);
        }
    }

    /// <summary>Appends pending byte-fallback bytes as UTF-8 (invalid sequences become U+FFFD).</summary>
    public static void FlushBytes(List<byte> bytes, StringBuilder sb)
    {
        if (bytes.Count == 0) return;
        sb.Append(Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes)));
        bytes.Clear();
    }

    /// <summary>Decodes ordinary ids as sentencepiece does.</summary>
    public string Decode(ReadOnlySpan<int> ids)
    {
        var sb = new StringBuilder();
        var bytes = new List<byte>();
        bool strip = true;
        DecodeTo(ids, sb, ref strip, bytes);
        FlushBytes(bytes, sb);
        return sb.ToString();
    }

    private ref struct Proto
    {
        private readonly ReadOnlySpan<byte> _d;
        private int _p;
        public Proto(byte[] d, int start, int end) { _d = d.AsSpan(start, end - start); _p = 0; }
        private Proto(ReadOnlySpan<byte> d) { _d = d; _p = 0; }
        public readonly bool More => _p < _d.Length;
        public readonly int Length => _d.Length;
        public ulong Varint()
        {
            ulong v = 0; int shift = 0;
            while (true)
            {
                if (_p >= _d.Length) throw new InvalidDataException("truncated varint");
                byte b = _d[_p++];
                v |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) return v;
                shift += 7;
                if (shift > 63) throw new InvalidDataException("varint too long");
            }
        }
        public (int Field, int Wire) Key() { var k = Varint(); return ((int)(k >> 3), (int)(k & 7)); }
        public Proto Sub()
        {
            int len = checked((int)Varint());
            if (len < 0 || _p + len > _d.Length) throw new InvalidDataException($"length {len} runs past the end");
            var sub = new Proto(_d.Slice(_p, len));
            _p += len;
            return sub;
        }
        public string String()
        {
            int len = checked((int)Varint());
            if (len < 0 || _p + len > _d.Length) throw new InvalidDataException($"string length {len} runs past the end");
            var s = new UTF8Encoding(false, true).GetString(_d.Slice(_p, len));
            _p += len;
            return s;
        }
        public float Fixed32Float()
        {
            if (_p + 4 > _d.Length) throw new InvalidDataException("truncated float");
            var f = System.Buffers.Binary.BinaryPrimitives.ReadSingleLittleEndian(_d.Slice(_p));
            _p += 4;
            return f;
        }
        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: _p += 8; break;
                case 2: Sub(); break;
                case 5: _p += 4; break;
                default: throw new InvalidDataException($"unsupported wire type {wire}");
            }
            if (_p > _d.Length) throw new InvalidDataException("truncated field");
        }
    }
}
