using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hub.Generation;

namespace Hub.Cli.Commands;

/// <summary><c>hub generate</c>: continue a prompt (text or ids).</summary>
public static class GenerateCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var m = new CliRunner.ModelArgs();
        var prompt = new Option<string?>("--prompt") { Description = "prompt text" };
        var promptIds = new Option<string?>("--prompt-ids") { Description = "prompt as comma-separated token ids" };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "tokens to generate", DefaultValueFactory = _ => 20 };
        var sample = new Option<bool>("--sample") { Description = "sample instead of greedy decoding" };
        var temperature = new Option<float?>("--temperature") { Description = "sampling temperature" };
        var topK = new Option<int?>("--top-k") { Description = "top-k sampling" };
        var topP = new Option<float?>("--top-p") { Description = "top-p (nucleus) sampling" };
        var seed = new Option<int?>("--seed") { Description = "random seed for sampling" };
        var json = new Option<bool>("--json") { Description = "print {\"ids\": [...], \"text\": ...}" };
        var cmd = new Command("generate", "Generate a continuation with the model's KV cache.");
        m.AddTo(cmd);
        foreach (var o in new Option[] { prompt, promptIds, maxNew, sample, temperature, topK, topP, seed, json }) cmd.Options.Add(o);
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            var text = r.GetValue(prompt);
            var idsText = r.GetValue(promptIds);
            if ((text is null) == (idsText is null)) throw new ArgumentException("give exactly one of --prompt or --prompt-ids");
            if (r.GetValue(maxNew) < 0) throw new ArgumentException("--max-new-tokens must be ≥ 0");
            using var lm = CausalLM.FromPretrained(r.GetValue(m.Model)!, export: true, m.Options(r, quiet: r.GetValue(json)));
            var cfg = new GenerationConfig { MaxNewTokens = r.GetValue(maxNew) };
            if (r.GetValue(sample)) cfg.DoSample = true;
            if (r.GetValue(temperature) is float t) cfg.Temperature = t;
            if (r.GetValue(topK) is int k) cfg.TopK = k;
            if (r.GetValue(topP) is float p) cfg.TopP = p;
            if (r.GetValue(seed) is int s) cfg.Seed = (ulong)s;
            int[] input = idsText is not null ? CliRunner.ParseIds(idsText)
                : lm.Tokenizer is { } tok ? tok.Encode(text!) : throw new ArgumentException("this model has no tokenizer; use --prompt-ids");
            var ids = lm.Generate(input, cfg);
            var outText = lm.Tokenizer?.Decode(ids, skipSpecialTokens: true);
            if (r.GetValue(json))
                Console.WriteLine(new JsonObject { ["ids"] = new JsonArray(ids.Select(i => (JsonNode)i).ToArray()), ["text"] = outText }.ToJsonString());
            else
                Console.WriteLine(outText is null ? string.Join(",", ids) : (text ?? "") + outText);
            return 0;
        }));
        return cmd;
    }
}

/// <summary><c>hub logits</c>: every position's logits for given ids, as JSON (compare with transformers).</summary>
public static class LogitsCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var m = new CliRunner.ModelArgs();
        var ids = new Option<string>("--ids") { Description = "comma-separated token ids", Required = true };
        var json = new Option<bool>("--json") { Description = "print {\"logits\": [[...], ...]} (the default output is JSON too)" };
        var cmd = new Command("logits", "Print the logits of every position for the given token ids.");
        m.AddTo(cmd);
        cmd.Options.Add(ids); cmd.Options.Add(json);
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            var input = CliRunner.ParseIds(r.GetValue(ids)!);
            using var lm = CausalLM.FromPretrained(r.GetValue(m.Model)!, export: true, m.Options(r, quiet: true));
            var logits = lm.Logits(input);
            JsonOut.WriteMatrix("logits", logits);
            return 0;
        }));
        return cmd;
    }
}

/// <summary><c>hub info</c>: what a model is and how it is stored.</summary>
public static class InfoCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var m = new CliRunner.ModelArgs();
        var verify = new Option<bool>("--verify") { Description = "recompute the weights checksum" };
        var cmd = new Command("info", "Describe a model: architecture, task, inputs/outputs, weights, runtime ISA.");
        m.AddTo(cmd);
        cmd.Options.Add(verify);
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            using var model = Model.FromPretrained(r.GetValue(m.Model)!, export: true, m.Options(r));
            var g = model.Graph;
            Console.WriteLine($"folder:        {model.Directory}");
            Console.WriteLine($"model_type:    {g.ModelType} ({model.GetType().Name})");
            Console.WriteLine($"task:          {g.Metadata["task"]}");
            Console.WriteLine($"nodes:         {g.Nodes.Count} ({string.Join(", ", g.Nodes.GroupBy(n => n.Op).Select(x => $"{x.Key}×{x.Count()}"))})");
            long bytes = g.Weights.Sum(w => w.Length);
            Console.WriteLine($"weights:       {g.Weights.Count} tensors, {bytes / 1048576.0:F2} MiB ({string.Join(", ", g.Weights.GroupBy(w => w.DType).Select(x => $"{x.Key}×{x.Count()}"))})");
            Console.WriteLine($"parameters:    {g.Weights.Sum(w => w.Shape.ElementCount):N0}");
            foreach (var i in g.Inputs) Console.WriteLine($"input:         {i.Name} {i.DType} [{string.Join(", ", i.Shape)}]");
            foreach (var o in g.Outputs) Console.WriteLine($"output:        {o.Name} {o.DType} [{string.Join(", ", o.Shape)}]");
            Console.WriteLine($"states:        {g.States.Count}");
            Console.WriteLine($"tokenizer:     {model.Tokenizer?.GetType().Name ?? "(none)"}");
            Console.WriteLine($"runtime:       {Hub.Runtime.CpuInfo.Describe()}");
            if (r.GetValue(verify))
            {
                using var ir = Hub.IR.IrModel.Load(model.Directory);
                Console.WriteLine($"checksum:      {(ir.VerifyChecksum() ? "ok" : "MISMATCH")}");
            }
            return 0;
        }));
        return cmd;
    }
}
