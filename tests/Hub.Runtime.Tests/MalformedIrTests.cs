using Hub.IR;

namespace Hub.Runtime.Tests;

/// <summary>A malformed graph fails with an <see cref="IrFormatException"/> naming model.ir.json and the node.</summary>
public class MalformedIrTests
{
    private static IrFormatException Throws(IrModel ir)
    {
        var e = Assert.Throws<IrFormatException>(() =>
        {
            using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = 1, MaxContext = 8 });
            using var req = cm.CreateInferRequest();
        });
        Assert.EndsWith(IrFormat.JsonFile, e.FilePath);
        Assert.StartsWith(e.FilePath, e.Message);
        return e;
    }

    [Fact]
    public void Bad_attribute_names_the_graph_file_and_node()
    {
        using var tm = new TinyModel();
        using var ir = tm.Build();
        var rope = ir.Graph.Nodes.First(n => n.Op == Ops.Rope);
        rope.Attributes["style"] = "sideways";
        var e = Throws(ir);
        Assert.Contains($"node '{rope.Name}' (Rope)", e.Message);
        Assert.Contains("sideways", e.Message);
        Assert.Contains("re-export", e.Message);
    }

    [Fact]
    public void Wrong_input_count_names_the_graph_file_and_node()
    {
        using var tm = new TinyModel();
        using var ir = tm.Build();
        int i = ir.Graph.Nodes.FindIndex(n => n.Op == Ops.Rope);
        var old = ir.Graph.Nodes[i];
        ir.Graph.Nodes[i] = new Node { Name = old.Name, Op = old.Op, Inputs = [old.Inputs[0]], Outputs = old.Outputs, Attributes = (System.Text.Json.Nodes.JsonObject)old.Attributes.DeepClone() };
        var e = Throws(ir);
        Assert.Contains($"node '{old.Name}'", e.Message);
        Assert.Contains("inputs", e.Message);
    }
}
