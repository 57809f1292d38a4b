using System.Text;

namespace Hub.Tokenization;

/// <summary>
/// A LLaMA-style SentencePiece tokenizer (<c>tokenizer.model</c>, BPE with byte fallback): BOS added by default (as
/// <c>LlamaTokenizer</c>), added tokens from tokenizer_config.json split out of the text first.
/// </summary>
public sealed class SentencePieceTokenizer : HubTokenizer
{
    private readonly Dictionary<int, AddedToken> _added = new();
    private readonly Dictionary<string, int> _special = new();
    private readonly AddedTokenSplitter _splitter;
    private readonly int _vocabSize;

    /// <summary>The SentencePiece model.</summary>
    public SentencePieceModel Model { get; }

    /// <summary>Wraps <paramref name="model"/>; <paramref name="config"/> supplies added tokens, BOS/EOS flags and the chat template.</summary>
    public SentencePieceTokenizer(SentencePieceModel model, TokenizerConfig? config = null)
    {
        Model = model;
        config ??= new TokenizerConfig();
        foreach (var t in config.AddedTokensDecoder) _added[t.Id] = t;
        foreach (var s in new[] { config.BosToken, config.EosToken, config.UnkToken, config.PadToken }.Concat(config.AdditionalSpecialTokens))
            if (s is not null && !_added.Values.Any(a => a.Content == s) && model.PieceToId(s) is { } id) _added[id] = new AddedToken(s, id);
        foreach (var t in _added.Values) if (t.Special) _special[t.Content] = t.Id;
        _splitter = new AddedTokenSplitter(_added.Values);
        _vocabSize = Math.Max(model.Count, _added.Count == 0 ? 0 : _added.Keys.Max() + 1);
        Specials = new ConfigSpecials(config, TokenToId, _special, addBosByDefault: true,
            model.BosId >= 0 ? model.BosId : null, model.EosId >= 0 ? model.EosId : null);
    }

    /// <summary>Loads tokenizer.model and tokenizer_config.json from <paramref name="dir"/>.</summary>
    public static SentencePieceTokenizer FromPretrained(string dir, TokenizerConfig? config = null) =>
        new(SentencePieceModel.Load(Path.Combine(dir, "tokenizer.model")), config ?? TokenizerConfig.Load(dir));

    /// <inheritdoc/>
    public override int VocabSize => _vocabSize;

    /// <inheritdoc/>
    public override int[] Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = Specials!.Start(addSpecialTokens);
        foreach (var seg in _splitter.Split(text))
        {
            if (seg.Token is { } t) ids.Add(t.Id);
            else ids.AddRange(Model.Encode(seg.Text!));
        }
        return Specials.Finish(ids, addSpecialTokens);
    }

    /// <inheritdoc/>
    public override string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var sb = new StringBuilder();
        var bytes = new List<byte>();
        bool strip = true;
        for (int i = 0; i < ids.Length; i++)
        {
            int id = ids[i];
            if ((uint)id >= (uint)_vocabSize) throw new ModelInputException($"token id {id} is outside the vocabulary (size {_vocabSize}) of {Model.Source}");
            if (_added.TryGetValue(id, out var at))
            {
                if (skipSpecialTokens && at.Special) continue;
                SentencePieceModel.FlushBytes(bytes, sb);
                sb.Append(at.Content);
                if (!at.Special) strip = false;   // BOS etc. keep sentencepiece's rule for the first real piece
                continue;
            }
            Model.DecodeTo(ids.Slice(i, 1), sb, ref strip, bytes);
        }
        SentencePieceModel.FlushBytes(bytes, sb);
        return sb.ToString();
    }

    /// <inheritdoc/>
    public override int? TokenToId(string token) =>
        _added.Values.FirstOrDefault(a => a.Content == token)?.Id ?? Model.PieceToId(token);

    /// <inheritdoc/>
    public override string? IdToToken(int id) =>
        _added.TryGetValue(id, out var a) ? a.Content : (uint)id < (uint)Model.Count ? Model.Piece(id) : null;
}
