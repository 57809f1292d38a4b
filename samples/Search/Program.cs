// Semantic search: embed a small built-in corpus with a sentence-embedding model, then answer queries by cosine
// similarity (the embeddings are unit length when the repo's pipeline normalizes, as all-MiniLM-L6-v2's does).
//   dotnet run --project samples/Search -- <model folder or repo id> ["query" ...]
// e.g. dotnet run --project samples/Search -- ../shared/models/sentence-transformers/all-MiniLM-L6-v2 "how do plants make food?"
using Hub;

if (args.Length == 0)
{
    Console.Error.WriteLine("usage: Search <sentence-embedding model folder or hub repo id> [query ...]");
    return 1;
}

string[] corpus =
[
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "A neural network learns by adjusting its weights to reduce a loss function.",
    "Regular exercise strengthens the heart and improves mood.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "Bread rises because yeast produces carbon dioxide during fermentation.",
    "Jupiter is the largest planet in the solar system.",
    "The violin has four strings tuned in perfect fifths.",
    "Rainforests hold more than half of the world's plant and animal species.",
    "Compilers translate source code into machine instructions.",
];
string[] queries = args.Length > 1 ? args[1..] :
[
    "How do plants make food from sunlight?",
    "famous landmark in France",
    "training deep learning models",
    "what makes dough rise?",
];

try
{
    using var encoder = TextEncoder.FromPretrained(args[0], export: true);
    Console.WriteLine($"{encoder.ModelType}: {encoder.Dimension}-dim embeddings, pooling {string.Join("+", encoder.Pipeline.Pooling)}, " +
        $"normalize {encoder.Pipeline.Normalize}, max {encoder.DefaultMaxLength} tokens");
    var docs = encoder.Embed(corpus);
    var qs = encoder.Embed(queries);
    for (int q = 0; q < queries.Length; q++)
    {
        Console.WriteLine();
        Console.WriteLine($"query: {queries[q]}");
        var ranked = docs.Select((d, i) => (Score: TextEncoder.CosineSimilarity(qs[q], d), Index: i))
            .OrderByDescending(x => x.Score).Take(3);
        foreach (var (score, i) in ranked) Console.WriteLine($"  {score:0.000}  {corpus[i]}");
    }
    return 0;
}
catch (HubException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}
