using Hub.Tokenization;

namespace Hub.Tokenization.Tests;

internal static class StreamHelper
{
    /// <summary>Pushes every id, then flushes; returns the pieces in order (Flush last, evaluated after the pushes).</summary>
    public static List<string> Run(StreamingDecoder dec, IEnumerable<int> ids)
    {
        var pieces = ids.Select(dec.Push).ToList();
        pieces.Add(dec.Flush());
        return pieces;
    }
}
