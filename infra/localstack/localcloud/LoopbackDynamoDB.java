package localcloud;

import java.lang.instrument.Instrumentation;
import java.lang.reflect.Field;
import java.lang.reflect.Method;

/** Empty -javaagent for LocalStack, plus a launcher that binds DynamoDB Local to one host. */
public final class LoopbackDynamoDB {
    private LoopbackDynamoDB() {}

    public static void premain(String args, Instrumentation inst) {}

    public static void main(String[] args) throws Exception {
        String host = System.getProperty("localcloud.ddb.host", "127.0.0.1");
        Class<?> runner = Class.forName("software.amazon.dynamodb.services.local.main.ServerRunner");
        Object proxy = runner.getMethod("createServerFromCommandLineArgs", String[].class)
                .invoke(null, (Object) args);
        Field field = proxy.getClass().getDeclaredField("server");
        field.setAccessible(true);
        Object jetty = field.get(proxy);
        Object[] connectors = (Object[]) jetty.getClass().getMethod("getConnectors").invoke(jetty);
        for (Object connector : connectors) {
            Method setHost = connector.getClass().getMethod("setHost", String.class);
            setHost.invoke(connector, host);
        }
        proxy.getClass().getMethod("start").invoke(proxy);
    }
}
