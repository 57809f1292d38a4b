namespace Hub.Tokenization;

/// <summary>
/// Splits raw text around added/special tokens before the model's algorithm runs, as HF's AddedVocabulary does
/// (leftmost match, longest at a position; lstrip/rstrip swallow neighbouring whitespace; single_word needs word
/// boundaries). Without it BPE would cut <c>&lt;|endoftext|&gt;</c> into 7 ordinary tokens.
/// </summary>
public sealed class AddedTokenSplitter
{
    private readonly Dictionary<char, AddedToken[]> _byFirst;

    /// <summary>Creates a splitter for <paramref name="tokens"/> (empty contents are ignored).</summary>
    public AddedTokenSplitter(IEnumerable<AddedToken> tokens)
    {
        _byFirst = tokens.Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.DistinctBy(t => t.Content).OrderByDescending(t => t.Content.Length).ToArray());
    }

    /// <summary>True when there is nothing to split on.</summary>
    public bool IsEmpty => _byFirst.Count == 0;

    /// <summary>One piece of split text: either plain text or an added token.</summary>
    public readonly record struct Segment(string? Text, AddedToken? Token);

    /// <summary>Splits <paramref name="text"/>; plain-text segments are never empty.</summary>
    public List<Segment> Split(string text)
    {
        var result = new List<Segment>();
        if (IsEmpty) { if (text.Length > 0) result.Add(new Segment(text, null)); return result; }
        int plainStart = 0, i = 0;
        while (i < text.Length)
        {
            var match = _byFirst.TryGetValue(text[i], out var cands) ? FindAt(text, i, cands) : null;
            if (match is null) { i++; continue; }
            int plainEnd = i;
            if (match.LStrip) while (plainEnd > plainStart && char.IsWhiteSpace(text[plainEnd - 1])) plainEnd--;
            if (plainEnd > plainStart) result.Add(new Segment(text[plainStart..plainEnd], null));
            result.Add(new Segment(null, match));
            i += match.Content.Length;
            if (match.RStrip) while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
            plainStart = i;
        }
        if (plainStart < text.Length) result.Add(new Segment(text[plainStart..], null));
        return result;
    }

    private static AddedToken? FindAt(string text, int i, AddedToken[] cands)
    {
        foreach (var t in cands)
        {
            if (i + t.Content.Length > text.Length || string.CompareOrdinal(text, i, t.Content, 0, t.Content.Length) != 0) continue;
            if (t.SingleWord)
            {
                int end = i + t.Content.Length;
                if (i > 0 && IsWordChar(text[i - 1]) && IsWordChar(t.Content[0])) continue;
                if (end < text.Length && IsWordChar(text[end]) && IsWordChar(t.Content[^1])) continue;
            }
            return t;
        }
        return null;
    }

    private static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c == '_';
}
