// Text classification with any sequence classification checkpoint (BERT and friends):
//   dotnet run --project samples/Classify -- <model folder or repo id> ["text" ...]
// e.g. dotnet run --project samples/Classify -- ../shared/fixtures/bert-tiny-cls "great movie" "Is it raining?|No, it is sunny."
// A text written "a|b" is classified as the sentence pair (a, b). The checkpoint is converted to Hub IR on first
// use and cached.
using Hub;

if (args.Length == 0)
{
    Console.Error.WriteLine("usage: Classify <model folder or hub repo id> [text | \"first|second\"] ...");
    return 1;
}

string[] inputs = args.Length > 1 ? args[1..] :
[
    "This movie was surprisingly good!",
    "I did not like it.",
    "Is it raining?|No, the sun is out today.",
];
var texts = inputs.Select(t => t.Split('|', 2)[0]).ToList();
var pairs = inputs.Select(t => t.Contains('|') ? t.Split('|', 2)[1] : null).ToList();

try
{
    using var classifier = SequenceClassifier.FromPretrained(args[0], export: true);
    Console.WriteLine($"{classifier.ModelType}: {classifier.NumLabels} labels ({string.Join(", ", classifier.Labels)}), {classifier.ProblemType}");
    var results = classifier.Classify(texts, pairs.Any(p => p is not null) ? pairs : null);
    for (int i = 0; i < results.Count; i++)
    {
        var r = results[i];
        Console.WriteLine($"{r.Label,-12} {r.Score:0.000}  {inputs[i]}");
        Console.WriteLine($"{"",-12} " + string.Join("  ", r.Labels.Select((l, j) => $"{l}={r.Probabilities[j]:0.000}")));
    }
    return 0;
}
catch (HubException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}
